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
