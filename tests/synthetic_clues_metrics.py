"""Serve /metrics with the clues instruments, fed with synthetic values.

A stand-in for a real instrumented RQ worker, used by tests/test_stack_promql_data.py until
the package emits its metrics itself: same OTel names, units and attributes as DESIGN.md,
exported by the OpenTelemetry Prometheus exporter (so with the real name translation).

    python tests/synthetic_clues_metrics.py PORT
"""

from __future__ import annotations

import sys
import time

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import start_http_server

# Default buckets of the messaging semconv duration histograms (seconds).
BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
QUEUE = "default"
WORKER_CLASS = "app.jobs.send_email"
ERROR_TYPE = "ValueError"


def main(port: int) -> None:
    reader = PrometheusMetricReader()
    histogram = ExplicitBucketHistogramAggregation(BUCKETS)
    provider = MeterProvider(
        resource=Resource.create({"service.name": "rq-worker"}),
        metric_readers=[reader],
        views=[
            View(instrument_name="messaging.process.duration", aggregation=histogram),
            View(instrument_name="rq.job.time_in_queue", aggregation=histogram),
        ],
    )
    meter = provider.get_meter("opentelemetry_instrumentation_clues.synthetic")
    duration = meter.create_histogram("messaging.process.duration", unit="s")
    time_in_queue = meter.create_histogram("rq.job.time_in_queue", unit="s")
    sent = meter.create_counter("messaging.client.sent.messages")
    consumed = meter.create_counter("messaging.client.consumed.messages")
    start_http_server(port, addr="127.0.0.1")

    base = {"messaging.system": "rq", "messaging.destination.name": QUEUE, "rq.job.func_name": WORKER_CLASS}
    ok = {**base, "clues.outcome": "success"}
    failed = {**base, "clues.outcome": "failure", "error.type": ERROR_TYPE}
    deadline = time.monotonic() + 600  # never outlive the test run by much
    i = 0
    while time.monotonic() < deadline:
        i += 1
        sent.add(3, base)
        time_in_queue.record(0.3 * (i % 5), base)  # 0, 0.3, 0.6, 0.9, 1.2 s: 80 % wait <= 1 s
        consumed.add(2, ok)
        duration.record(0.2, ok)
        consumed.add(1, failed)
        duration.record(0.7, failed)
        time.sleep(0.2)


if __name__ == "__main__":
    main(int(sys.argv[1]))
