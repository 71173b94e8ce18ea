"""The lifecycle through SimpleWorker, captured in memory."""

from __future__ import annotations

import os

from opentelemetry.trace import SpanKind, StatusCode
from rq import Queue, SimpleWorker

from tests import jobs

SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]


def run_burst(queue: Queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def test_successful_job_publishes_four_events_in_one_trace(redis_conn, captured, instrumented):
    queue = Queue("default", connection=redis_conn)
    job = queue.enqueue(jobs.add, 1, 2)
    run_burst(queue)

    assert job.get_status(refresh=True) == "finished"
    logs = captured.log_attributes()
    assert [a["clues.event_type"] for a in logs] == SUCCESS
    hashes = {a["clues.event_hash"] for a in logs}
    assert len(hashes) == 1
    (event_hash,) = hashes
    assert len(event_hash) == 32 and int(event_hash, 16)

    spans = captured.finished_spans()
    send = next(s for s in spans if s.name == "send default")
    process = next(s for s in spans if s.name == "process default")
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert format(send.context.trace_id, "032x") == event_hash
    assert process.context.trace_id == send.context.trace_id
    assert process.parent.span_id == send.context.span_id
    # span events mirror the log records, in order, on the job's spans
    assert [e.name for e in send.events] == ["enqueued"]
    assert [e.name for e in process.events] == SUCCESS[1:]
    timestamps = [send.events[0].timestamp] + [e.timestamp for e in process.events]
    assert timestamps == sorted(timestamps)

    by_type = {a["clues.event_type"]: a for a in logs}
    assert by_type["dequeued"]["clues.time_in_queue"] >= 0
    assert by_type["perform_finished"]["clues.time_to_perform"] >= 0
    assert by_type["enqueued"]["rq.job.func_name"] == "tests.jobs.add"
    assert by_type["enqueued"]["rq.job.args"] == "[1,2]"
    assert by_type["enqueued"]["messaging.destination.name"] == "default"
    assert by_type["enqueued"]["messaging.message.id"] == job.id
    assert {a["process.pid"] for a in logs} == {os.getpid()}

    # log records sit in the job's trace context
    records = [item.log_record for item in captured.logs.get_finished_logs()]
    assert {r.trace_id for r in records} == {send.context.trace_id}
    assert [r.event_name for r in records] == [f"rq.job.{t}" for t in SUCCESS]


def test_failing_job_ends_in_failed_with_exception_details(redis_conn, captured, instrumented):
    queue = Queue("default", connection=redis_conn)
    job = queue.enqueue(jobs.fail, "no luck")
    run_burst(queue)

    assert job.get_status(refresh=True) == "failed"
    logs = captured.log_attributes()
    assert [a["clues.event_type"] for a in logs] == ["enqueued", "dequeued", "perform_started", "failed"]
    failed = logs[-1]
    assert failed["exception.type"] == "ValueError"
    assert failed["exception.message"] == "no luck"
    assert "tests/jobs.py" in failed["exception.stacktrace"]
    assert "raise ValueError(message)" in failed["exception.stacktrace"]
    assert failed["clues.time_to_perform"] >= 0

    process = next(s for s in captured.finished_spans() if s.name == "process default")
    assert process.status.status_code is StatusCode.ERROR
    assert process.attributes["error.type"] == "ValueError"


def test_spans_of_the_job_nest_under_the_process_span(redis_conn, captured, instrumented, monkeypatch):
    monkeypatch.setattr(jobs, "tracer_provider", captured.tracer_provider)
    queue = Queue("default", connection=redis_conn)
    queue.enqueue(jobs.traced_child)
    run_burst(queue)
    spans = {s.name: s for s in captured.finished_spans()}
    assert spans["inside the job"].parent.span_id == spans["process default"].context.span_id
