"""Every way a job travels through RQ, in-process: exact events and trace structure."""

from __future__ import annotations

import os
import time

import pytest
import rq
from opentelemetry.trace import SpanKind, StatusCode
from rq import Callback, Queue, Retry, SimpleWorker, Worker

from tests import jobs

SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]
RQ_MAJOR = int(rq.__version__.split(".")[0])


def types_of(captured, key: str | None = None) -> list[str]:
    return [a["clues.event_type"] for a in captured.log_attributes() if key is None or a["clues.event_hash"] == key]


def spans_named(captured, name: str) -> list:
    return [s for s in captured.finished_spans() if s.name == name]


def test_synchronous_queue_publishes_the_whole_lifecycle_inside_enqueue(redis_conn, captured, instrumented):
    queue = Queue("sync", connection=redis_conn, is_async=False)
    job = queue.enqueue(jobs.add, 2, 3)
    assert job.return_value() == 5
    assert types_of(captured) == SUCCESS
    (send,) = spans_named(captured, "send sync")
    (process,) = spans_named(captured, "process sync")
    assert process.parent.span_id == send.context.span_id
    assert send.end_time <= process.start_time  # the send span does not wrap the run
    assert {a["clues.event_hash"] for a in captured.log_attributes()} == {format(send.context.trace_id, "032x")}


def test_synchronous_queue_failure(redis_conn, captured, instrumented):
    queue = Queue("sync", connection=redis_conn, is_async=False)
    queue.enqueue(jobs.fail, "sync failure")
    assert types_of(captured) == ["enqueued", "dequeued", "perform_started", "failed"]
    failed = captured.log_attributes()[-1]
    assert failed["exception.type"] == "ValueError" and failed["exception.message"] == "sync failure"
    (process,) = spans_named(captured, "process sync")
    assert process.status.status_code is StatusCode.ERROR


def test_enqueue_many_and_at_front(redis_conn, captured, instrumented):
    queue = Queue("many", connection=redis_conn)
    many = queue.enqueue_many([Queue.prepare_data(jobs.add, (i, i)) for i in range(3)])
    first = queue.enqueue(jobs.add, 100, 0, at_front=True)
    assert queue.job_ids[0] == first.id
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    hashes = {a["clues.event_hash"] for a in captured.log_attributes()}
    assert len(hashes) == 4
    assert all(types_of(captured, h) == SUCCESS for h in hashes)
    dequeued = [a["messaging.message.id"] for a in captured.log_attributes() if a["clues.event_type"] == "dequeued"]
    assert dequeued[0] == first.id and set(dequeued[1:]) == {j.id for j in many}


if RQ_MAJOR >= 3:  # unique jobs arrived in rq 3.0

    def test_unique_job(redis_conn, captured, instrumented):
        queue = Queue("unique", connection=redis_conn)
        job = queue.enqueue(jobs.add, 1, 1, job_id="only-once", unique=True)
        with pytest.raises(rq.exceptions.DuplicateJobError):
            queue.enqueue(jobs.add, 1, 1, job_id="only-once", unique=True)
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
        assert job.get_status(refresh=True) == "finished"
        assert types_of(captured) == SUCCESS


def test_retry_without_interval_is_one_trace_with_numbered_attempts(redis_conn, captured, instrumented):
    queue = Queue("retry", connection=redis_conn)
    job = queue.enqueue(jobs.fail, "flaky", retry=Retry(max=2))
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "failed"
    logs = captured.log_attributes()
    attempt_events = ["dequeued", "perform_started", "failed"]
    assert [a["clues.event_type"] for a in logs] == [
        "enqueued",
        *attempt_events,
        "enqueued",
        *attempt_events,
        "enqueued",
        *attempt_events,
    ]
    assert len({a["clues.event_hash"] for a in logs}) == 1
    assert [a["rq.job.attempt"] for a in logs if a["clues.event_type"] == "dequeued"] == [1, 2, 3]
    assert [a["rq.job.will_retry"] for a in logs if a["clues.event_type"] == "failed"] == [True, True, False]
    processes = spans_named(captured, "process retry")
    assert len(processes) == 3 and len({s.context.trace_id for s in captured.finished_spans()}) == 1
    # each attempt hangs under the send span that (re-)enqueued it
    sends = {s.context.span_id: s for s in spans_named(captured, "send retry")}
    assert all(p.parent.span_id in sends for p in processes)


def work_until_done(queue, job, worker_class=SimpleWorker, timeout: float = 30) -> None:
    """Burst workers with the scheduler until the job ends (retry intervals need the scheduler)."""
    deadline = time.monotonic() + timeout
    while job.get_status(refresh=True) not in ("finished", "failed"):
        assert time.monotonic() < deadline, f"job still {job.get_status()}"
        worker_class([queue], connection=queue.connection).work(burst=True, with_scheduler=True)
        time.sleep(0.1)  # the scheduler only moves the job once its interval has passed


def test_retry_with_interval_goes_through_the_schedule(redis_conn, captured, instrumented):
    queue = Queue("retry", connection=redis_conn)
    job = queue.enqueue(jobs.fail, "later", retry=Retry(max=1, interval=1))
    work_until_done(queue, job)
    logs = captured.log_attributes()
    assert [a["clues.event_type"] for a in logs] == [
        "enqueued", "dequeued", "perform_started", "failed",
        "scheduled", "enqueued", "dequeued", "perform_started", "failed",
    ]  # fmt: skip
    assert len({a["clues.event_hash"] for a in logs}) == 1
    assert spans_named(captured, "schedule retry")


def test_enqueue_in_publishes_scheduled_then_enqueued_in_one_trace(redis_conn, captured, instrumented):
    queue = Queue("later", connection=redis_conn)
    job = queue.enqueue_in(__import__("datetime").timedelta(seconds=1), jobs.add, 1, 2)
    work_until_done(queue, job)
    assert types_of(captured) == ["scheduled", *SUCCESS]
    (schedule,) = spans_named(captured, "schedule later")
    (send,) = spans_named(captured, "send later")
    (process,) = spans_named(captured, "process later")
    assert send.parent.span_id == schedule.context.span_id and process.parent.span_id == send.context.span_id
    assert format(schedule.context.trace_id, "032x") == captured.log_attributes()[0]["clues.event_hash"]


def test_returned_retry_counts_as_a_failed_attempt(redis_conn, captured, instrumented):
    queue = Queue("retry", connection=redis_conn)
    job = queue.enqueue(jobs.retry_until_exhausted)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "failed"
    failed = [a for a in captured.log_attributes() if a["clues.event_type"] == "failed"]
    assert [(a["error.type"], a["rq.job.will_retry"], a["rq.job.attempt"]) for a in failed] == [
        ("RetryReturned", True, 1),
        ("RetryReturned", False, 2),
    ]
    assert not any("exception.type" in a for a in failed)  # a returned Retry is no exception
    assert len({a["clues.event_hash"] for a in captured.log_attributes()}) == 1


def test_dependent_is_deferred_then_enqueued_and_links_to_its_dependency(redis_conn, captured, instrumented):
    queue = Queue("deps", connection=redis_conn)
    first = queue.enqueue(jobs.add, 1, 1)
    second = queue.enqueue(jobs.add, 2, 2, depends_on=first)
    assert second.get_status() == "deferred"
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert second.get_status(refresh=True) == "finished"
    by_job = {}
    for attributes in captured.log_attributes():
        by_job.setdefault(attributes["messaging.message.id"], []).append(attributes)
    assert [a["clues.event_type"] for a in by_job[first.id]] == SUCCESS
    assert [a["clues.event_type"] for a in by_job[second.id]] == ["deferred", *SUCCESS]
    assert len({a["clues.event_hash"] for a in by_job[second.id]}) == 1
    first_trace = by_job[first.id][0]["clues.event_hash"]
    second_sends = [s for s in spans_named(captured, "send deps") if format(s.context.trace_id, "032x") != first_trace]
    linked = {format(link.context.trace_id, "032x") for s in second_sends for link in s.links}
    assert first_trace in linked


def test_killed_horse_is_reported_by_the_worker(redis_conn, captured, instrumented):
    queue = Queue("oom", connection=redis_conn)
    job = queue.enqueue(jobs.kill_own_horse)
    Worker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "failed"
    logs = captured.log_attributes()
    # The horse reported perform_started before it died; the worker saw it die.
    assert [a["clues.event_type"] for a in logs] == ["enqueued", "dequeued", "perform_started", "failed"]
    failed = logs[-1]
    assert logs[2]["process.pid"] != os.getpid()  # the horse's
    assert failed["error.type"] == "WorkHorseKilled" and "exception.type" not in failed
    assert "signal 9" in failed["exception.message"]
    assert failed["process.pid"] == os.getpid() == logs[1]["process.pid"]  # published by the surviving parent
    assert failed["clues.time_to_perform"] > 0  # from the horse's perform_started to its death
    (process,) = spans_named(captured, "process oom")
    assert process.status.status_code is StatusCode.ERROR and process.kind is SpanKind.CONSUMER


def test_callbacks_run_inside_the_jobs_trace(redis_conn, captured, instrumented, monkeypatch):
    monkeypatch.setattr(jobs, "tracer_provider", captured.tracer_provider)
    queue = Queue("callbacks", connection=redis_conn)
    queue.enqueue(jobs.add, 1, 1, on_success=Callback(jobs.on_success_span))
    queue.enqueue(jobs.fail, on_failure=Callback(jobs.on_failure_span))
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    processes = spans_named(captured, "process callbacks")
    for name, process in zip(["on_success callback", "on_failure callback"], processes, strict=True):
        (callback,) = spans_named(captured, name)
        assert callback.parent.span_id == process.context.span_id


def test_child_mode_joins_the_callers_trace(redis_conn, captured):
    from opentelemetry_instrumentation_clues import CluesInstrumentor

    instrumentor = CluesInstrumentor()
    instrumentor.instrument(
        tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider, propagation="child"
    )
    try:
        queue = Queue("modes", connection=redis_conn)
        with captured.tracer_provider.get_tracer("app").start_as_current_span("web request") as request:
            queue.enqueue(jobs.add, 1, 1)
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    finally:
        instrumentor.uninstrument()
    (send,) = spans_named(captured, "send modes")
    (process,) = spans_named(captured, "process modes")
    assert send.parent.span_id == request.get_span_context().span_id
    assert process.context.trace_id == request.get_span_context().trace_id
    (event_hash,) = {a["clues.event_hash"] for a in captured.log_attributes()}
    assert event_hash != format(request.get_span_context().trace_id, "032x")


def test_link_mode_starts_a_new_trace_linked_to_the_caller(redis_conn, captured, instrumented):
    queue = Queue("modes", connection=redis_conn)
    with captured.tracer_provider.get_tracer("app").start_as_current_span("web request") as request:
        queue.enqueue(jobs.add, 1, 1)
    (send,) = spans_named(captured, "send modes")
    assert send.parent is None
    assert send.context.trace_id != request.get_span_context().trace_id
    assert [link.context.span_id for link in send.links] == [request.get_span_context().span_id]


def test_none_mode_carries_nothing(redis_conn, captured):
    from opentelemetry_instrumentation_clues import CluesInstrumentor

    instrumentor = CluesInstrumentor()
    instrumentor.instrument(
        tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider, propagation="none"
    )
    try:
        queue = Queue("modes", connection=redis_conn)
        job = queue.enqueue(jobs.add, 1, 1)
        assert rq.job.Job.fetch(job.id, connection=redis_conn).meta["clues"]["carrier"] == {}
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    finally:
        instrumentor.uninstrument()
    (send,) = spans_named(captured, "send modes")
    (process,) = spans_named(captured, "process modes")
    assert process.parent is None and process.context.trace_id != send.context.trace_id
    assert types_of(captured) == SUCCESS and len({a["clues.event_hash"] for a in captured.log_attributes()}) == 1


def test_the_global_propagator_carries_the_context(redis_conn, captured, instrumented):
    from opentelemetry import propagate
    from opentelemetry.propagators.textmap import DefaultGetter, DefaultSetter
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    SETTER, GETTER = DefaultSetter(), DefaultGetter()

    class Renamed(TraceContextTextMapPropagator):
        """tracecontext under another header name: proves clues uses whatever is configured."""

        def inject(self, carrier, context=None, setter=SETTER):
            plain: dict = {}
            super().inject(plain, context)
            if "traceparent" in plain:
                setter.set(carrier, "x-job-parent", plain["traceparent"])

        def extract(self, carrier, context=None, getter=GETTER):
            return super().extract({"traceparent": carrier.get("x-job-parent", "")}, context)

    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(Renamed())
    try:
        queue = Queue("modes", connection=redis_conn)
        job = queue.enqueue(jobs.add, 1, 1)
        assert set(rq.job.Job.fetch(job.id, connection=redis_conn).meta["clues"]["carrier"]) == {"x-job-parent"}
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    finally:
        propagate.set_global_textmap(previous)
    (send,) = spans_named(captured, "send modes")
    (process,) = spans_named(captured, "process modes")
    assert process.parent.span_id == send.context.span_id
