"""Read metric data points, from the SDK's in-memory reader or from OTLP requests, as plain tuples."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

Key = tuple  # (metric name, attributes[, resource])


def from_sdk(metrics_data: Any) -> dict[Key, Any]:
    """{(metric name, attributes): point} from an InMemoryMetricReader's data (cumulative)."""
    points: dict[Key, Any] = {}
    for resource_metrics in metrics_data.resource_metrics if metrics_data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    points[(metric.name, frozenset(point.attributes.items()))] = point
    return points


def from_otlp(requests: list[Any]) -> dict[Key, Any]:
    """The latest cumulative point of every series (per resource) in the OTLP metric requests received."""
    latest: dict[Key, Any] = {}
    for request in requests:
        for resource_metrics in request.resource_metrics:
            resource = tuple(sorted((kv.key, str(kv.value)) for kv in resource_metrics.resource.attributes))
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    for point in getattr(metric, kind).data_points:
                        attributes = {
                            kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in point.attributes
                        }
                        key = (metric.name, frozenset(attributes.items()), resource)
                        if key not in latest or point.time_unix_nano >= latest[key].time_unix_nano:
                            latest[key] = point
    return latest


def _value(point: Any) -> float:
    if hasattr(point, "bucket_counts"):  # a histogram: how many measurements
        return point.count
    if hasattr(point, "as_int"):  # an OTLP NumberDataPoint
        return getattr(point, point.WhichOneof("value"))
    return point.value


def totals(points: dict[Key, Any], name: str, by: str) -> dict[Any, float]:
    """Sum of a counter's values (or a histogram's counts) per value of attribute ``by``."""
    summed: dict[Any, float] = defaultdict(float)
    for (metric, attributes, *_resource), point in points.items():
        if metric != name:
            continue
        summed[dict(attributes).get(by)] += _value(point)
    return dict(summed)
