"""A real instrumented run for the viewing-stack tests, and the name translations of both paths.

The stack (docker-compose.yml) sends OTLP: SDK -> collector -> Prometheus' OTLP receiver and
Loki's OTLP endpoint. The tests run the same processes without Docker: ``opentelemetry-instrument
rq worker --with-scheduler default slow`` and the ``tests.stack_feed`` producer, each exporting
metrics both ways at once (``OTEL_METRICS_EXPORTER=otlp,prometheus``) and logs by OTLP to a real
receiver. So one run yields what a Prometheus scrape of the Python exporter shows *and* the OTLP
metric/log data Prometheus 3 and Loki 3 would translate, and the two can be compared.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

CLUES_SCOPE = "opentelemetry_instrumentation_clues"

# ------------------------------------------------------------------------------ scrape side


@dataclass
class Scrape:
    """Samples of one /metrics page: {(sample name, labels)} with empty label values dropped
    (the Python exporter fills labels a point lacks with "", which Prometheus treats as absent)."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = frozenset((k, v) for k, v in s.labels.items() if v != "")
                scrape.samples[(s.name, labels)] = s.value
        return scrape

    def series_names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def label_names(self, name_re: str = ".*") -> set[str]:
        return {k for (name, labels) in self.samples if re.fullmatch(name_re, name) for k, _ in labels}

    def sum_by(self, name: str, label: str, **match: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for (sample, labels), value in self.samples.items():
            lab = dict(labels)
            if sample == name and all(lab.get(k) == v for k, v in match.items()):
                out[lab.get(label, "")] = out.get(lab.get(label, ""), 0) + value
        return out

    def bucket(self, name: str, le: float) -> float:
        return sum(v for (n, labels), v in self.samples.items() if n == name and float(dict(labels)["le"]) == le)


def scrape(port: int) -> Scrape:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return Scrape.parse(response.read().decode())


#: Labels the Python exporter adds for the instrumentation scope. Prometheus 3's OTLP receiver
#: adds them only with `otlp.promote_scope_metadata: true` (default false), so dashboards must
#: not use them.
SCRAPE_ONLY_LABEL_RE = re.compile(r"otel_scope_.*")
#: Labels Prometheus itself attaches in both paths (scrape: job name and target; OTLP:
#: service.name and service.instance.id).
PROMETHEUS_TARGET_LABELS = frozenset({"job", "instance"})


# ------------------------------------------------------------------------------ OTLP side
# Prometheus 3 OTLP receiver, default `otlp.translation_strategy: UnderscoreEscapingWithSuffixes`
# (github.com/prometheus/otlptranslator): name split into tokens at every character that is not
# a letter or digit, joined with "_"; the unit's main part (before "/") is ignored when it
# contains "{" or "}", else mapped (s -> seconds, By -> bytes, ...) and appended unless already a
# token; a "/x" part adds "per_<x>"; monotonic sums get "total" (moved last); gauges with unit
# "1" get "ratio". Label names: characters other than [a-zA-Z0-9_] become "_". Histogram
# bucket bounds are written with Go's strconv.FormatFloat(bound, 'f', -1, 64): 1.0 -> "1".

_UNIT_MAP = {"d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
             "us": "microseconds", "ns": "nanoseconds", "By": "bytes", "1": "", "%": "percent"}  # fmt: skip
_PER_UNIT_MAP = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year"}


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[^A-Za-z0-9]+", text) if t]


def prometheus3_metric_name(name: str, unit: str, kind: str, monotonic: bool = False) -> str:
    tokens = _tokens(name)
    main, _, per = unit.partition("/")
    main, per = main.strip(), per.strip()
    if main and not re.search(r"[{}]", main):
        suffix = "_".join(_tokens(_UNIT_MAP.get(main, main)))
        if suffix and suffix not in tokens:
            tokens.append(suffix)
    if per and not re.search(r"[{}]", per):
        suffix = "_".join(_tokens(_PER_UNIT_MAP.get(per, per)))
        if suffix:
            tokens.append("per_" + suffix)
    if kind == "sum" and monotonic:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if kind == "gauge" and unit == "1":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    return "_".join(tokens)


def prometheus3_label_name(key: str) -> str:
    label = re.sub(r"[^A-Za-z0-9_]", "_", key)
    if label[:1].isdigit():
        label = "key_" + label
    elif label.startswith("_") and not label.startswith("__"):
        label = "key" + label
    return label


def go_format_float(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64) for the values a bucket boundary takes here."""
    text = repr(float(value))
    assert "e" not in text, f"exponent form not handled: {text}"
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class OtlpMetric:
    name: str
    unit: str
    kind: str  # sum | gauge | histogram | ...
    monotonic: bool
    point_attributes: frozenset[frozenset[str]]  # the attribute key sets of its points
    bounds: tuple[float, ...]


def otlp_clues_metrics(requests: list[Any]) -> dict[str, OtlpMetric]:
    """The clues instruments as they arrived over OTLP (name, unit, type, attribute keys)."""
    found: dict[str, OtlpMetric] = {}
    for request in requests:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                if sm.scope.name != CLUES_SCOPE:
                    continue
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    keys = frozenset(frozenset(kv.key for kv in p.attributes) for p in data.data_points)
                    bounds = tuple(data.data_points[0].explicit_bounds) if kind == "histogram" and keys else ()
                    old = found.get(m.name)
                    found[m.name] = OtlpMetric(
                        m.name,
                        m.unit,
                        kind,
                        bool(getattr(data, "is_monotonic", False)),
                        keys | (old.point_attributes if old else frozenset()),
                        bounds or (old.bounds if old else ()),
                    )
    return found


def prometheus3_series(metric: OtlpMetric) -> set[tuple[str, frozenset[str]]]:
    """(series name, label names) Prometheus 3 stores for one OTLP metric (resource labels aside)."""
    base = prometheus3_metric_name(metric.name, metric.unit, metric.kind, metric.monotonic)
    out = set()
    for keys in metric.point_attributes:
        labels = frozenset(prometheus3_label_name(k) for k in keys)
        if metric.kind == "histogram":
            out |= {(base + "_bucket", labels | {"le"}), (base + "_sum", labels), (base + "_count", labels)}
        else:
            out.add((base, labels))
    return out


# ------------------------------------------------------------------------------ Loki side
# Loki 3 OTLP ingestion (default `limits_config.otlp_config`): resource service.name becomes the
# stream label `service_name` (a fixed list of other resource attributes, such as
# deployment.environment or k8s.*, may become stream labels too; the dashboards select streams
# by service_name only); log record attributes become structured metadata, and so do the
# record's trace_id and span_id; attribute names are normalised like Prometheus labels
# (dots -> underscores).


def loki_structured_metadata(attribute_keys: set[str]) -> set[str]:
    return {prometheus3_label_name(k) for k in attribute_keys} | {"trace_id", "span_id"}
