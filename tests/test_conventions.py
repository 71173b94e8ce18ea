"""OpenTelemetry conventions (issue 18): names, suppression, start attributes, schema_url, failed sends."""

from __future__ import annotations

import json

from opentelemetry.sdk.trace import TracerProvider
from rq import Queue, SimpleWorker

from opentelemetry_instrumentation_clues import CluesInstrumentor, LogPublisher
from tests import conventions_jobs, jobs
from tests.otel_memory import Captured


def test_exception_type_is_module_and_qualname_as_the_sdk_writes_it(redis_conn, captured: Captured, tmp_path):
    path = tmp_path / "clues.log"
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(
        tracer_provider=captured.tracer_provider,
        logger_provider=captured.logger_provider,
        event_publisher=LogPublisher(path),
    )
    try:
        queue = Queue("conventions", connection=redis_conn)
        queue.enqueue(conventions_jobs.over_quota)
        queue.enqueue(jobs.fail, "builtin")
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    finally:
        instrumentor.uninstrument()

    sdk_span = TracerProvider().get_tracer("t").start_span("reference")
    sdk_span.record_exception(conventions_jobs.Billing.QuotaExceeded("x"))
    sdk_type = sdk_span.events[0].attributes["exception.type"]  # type: ignore[attr-defined,index]
    assert sdk_type == "tests.conventions_jobs.Billing.QuotaExceeded"

    failed = [a for a in captured.log_attributes() if a["clues.event_type"] == "failed"]
    assert [a["exception.type"] for a in failed] == [sdk_type, "ValueError"]  # builtins keep their bare name
    processes = [s for s in captured.finished_spans() if s.name == "process conventions"]
    assert [s.attributes["error.type"] for s in processes] == [sdk_type, "ValueError"]
    legacy = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["metadata"]["exception"] for line in legacy if line["event_type"] == "failed"] == [
        sdk_type,
        "ValueError",
    ]


def test_tracer_logger_and_meter_carry_the_semconv_schema_url(redis_conn, captured: Captured):
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.semconv.schemas import Schemas

    reader = InMemoryMetricReader()
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(
        tracer_provider=captured.tracer_provider,
        logger_provider=captured.logger_provider,
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    try:
        Queue("schema", connection=redis_conn).enqueue(jobs.add, 1, 2)
    finally:
        instrumentor.uninstrument()
    expected = Schemas.V1_28_0.value
    (send,) = captured.finished_spans()
    assert send.instrumentation_scope is not None and send.instrumentation_scope.schema_url == expected
    (record,) = captured.logs.get_finished_logs()
    assert record.instrumentation_scope is not None and record.instrumentation_scope.schema_url == expected
    data = reader.get_metrics_data()
    assert data is not None
    scopes = [sm.scope for rm in data.resource_metrics for sm in rm.scope_metrics]
    assert [s.schema_url for s in scopes if s.name == "opentelemetry_instrumentation_clues"] == [expected]
