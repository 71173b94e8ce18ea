"""Patching, unpatching, mixing with plain RQ, and clues' own failures."""

from __future__ import annotations

import logging
import os

import pytest
from rq import Queue, SimpleWorker, Worker
from rq.job import Job

from opentelemetry_instrumentation_clues import CluesInstrumentor
from opentelemetry_instrumentation_clues.instrumentation.job_context import META_KEY
from opentelemetry_instrumentation_clues.instrumentation.rq_compat import owner_of
from opentelemetry_instrumentation_clues.runtime.safety import Place
from opentelemetry_instrumentation_clues.telemetry import facts
from tests import jobs
from tests.otel_memory import Captured

PATCHED = [
    (Queue, "_enqueue_job"),
    (Queue, "schedule_job"),
    (Worker, "dequeue_job_and_maintain_ttl"),
    (Worker, "perform_job"),
    (Worker, "handle_job_success"),
    (Worker, "handle_job_failure"),
    (Worker, "handle_job_retry"),
]


def originals() -> dict[tuple[type, str], object]:
    return {(owner_of(cls, name), name): vars(owner_of(cls, name))[name] for cls, name in PATCHED}


def everything_rq() -> dict[tuple[str, str], object]:
    """Every attribute of rq's classes and of the modules clues may patch."""
    import rq.registry
    import rq.worker
    from rq.job import Job

    owners = {*Worker.__mro__, *SimpleWorker.__mro__, *rq.worker.SpawnWorker.__mro__, *Queue.__mro__, *Job.__mro__}
    owners |= set(rq.registry.FailedJobRegistry.__mro__)
    attributes = {(repr(o), name): value for o in owners if o is not object for name, value in vars(o).items()}
    attributes.update({("rq.registry", name): value for name, value in vars(rq.registry).items()})
    return attributes


def test_uninstrument_restores_every_patched_attribute_exactly(captured: Captured):
    before = originals()
    everything_before = everything_rq()
    instrumentor = CluesInstrumentor()
    for _ in range(2):
        instrumentor.instrument(tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider)
        assert all(vars(owner)[name] is not fn for (owner, name), fn in before.items())
        changed = {key for key, value in everything_rq().items() if everything_before.get(key) is not value}
        assert len(changed) >= 15  # enqueue, schedule, dependencies, sync runs, the worker's paths, clean-up
        instrumentor.uninstrument()
        assert originals() == before
        assert all(vars(owner)[name] is fn for (owner, name), fn in before.items())
        after = everything_rq()
        assert after.keys() == everything_before.keys()
        assert all(after[key] is value for key, value in everything_before.items())


def test_uninstrument_through_a_new_handle_of_the_singleton(captured: Captured):
    before = originals()
    CluesInstrumentor().instrument(tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider)
    CluesInstrumentor().uninstrument()
    assert originals() == before


def test_patches_go_on_the_class_that_owns_each_method():
    # SimpleWorker is a sibling of Worker from rq 2.7 on: patching the owner covers both.
    for _cls, name in PATCHED[2:]:
        assert owner_of(SimpleWorker, name) is owner_of(Worker, name)


def test_job_enqueued_by_plain_rq_gets_events_from_dequeue_with_fresh_event_hash(redis_conn, captured):
    queue = Queue("default", connection=redis_conn)
    plain_job = queue.enqueue(jobs.add, 1, 1)  # before instrument(): plain RQ
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider)
    try:
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    finally:
        instrumentor.uninstrument()
    assert plain_job.get_status(refresh=True) == "finished"
    logs = captured.log_attributes()
    assert [a["clues.event_type"] for a in logs] == ["dequeued", "perform_started", "perform_finished"]
    (event_hash,) = {a["clues.event_hash"] for a in logs}
    (process,) = captured.finished_spans()
    assert event_hash == format(process.context.trace_id, "032x")
    assert process.parent is None


def test_job_enqueued_with_clues_runs_normally_on_a_plain_worker(redis_conn, captured):
    queue = Queue("default", connection=redis_conn)
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider)
    try:
        job = queue.enqueue(jobs.add, 20, 22)
    finally:
        instrumentor.uninstrument()
    assert META_KEY in Job.fetch(job.id, connection=redis_conn).meta
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    assert job.return_value(refresh=True) == 42
    assert captured.event_types() == ["enqueued"]


def test_forking_worker_in_process_outcome_is_unaffected(redis_conn, captured, instrumented):
    queue = Queue("default", connection=redis_conn)
    job = queue.enqueue(jobs.pid)
    Worker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "finished"
    assert job.return_value(refresh=True) != os.getpid()


def test_an_exception_inside_clues_is_caught_logged_once_and_jobs_are_unaffected(
    redis_conn, captured, instrumented, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("clues bug")

    monkeypatch.setattr(facts.JobFacts, "own_attributes", broken)
    queue = Queue("default", connection=redis_conn)
    ok = [queue.enqueue(jobs.add, i, i) for i in range(3)]
    failing = queue.enqueue(jobs.fail)
    with caplog.at_level(logging.ERROR, logger="opentelemetry_instrumentation_clues"):
        SimpleWorker([queue], connection=redis_conn).work(burst=True)

    assert [j.get_status(refresh=True) for j in ok] == ["finished"] * 3
    assert [j.return_value() for j in ok] == [0, 2, 4]
    assert failing.get_status(refresh=True) == "failed"
    counts = CluesInstrumentor.error_counts()
    assert counts == {
        f"{Place.ENQUEUE_FINISH.value}:RuntimeError": 4,
        f"{Place.WORKER_DEQUEUED.value}:RuntimeError": 4,
        f"{Place.WORKER_PERFORM_STARTED.value}:RuntimeError": 4,
        f"{Place.WORKER_SUCCESS.value}:RuntimeError": 3,
        f"{Place.WORKER_FAILURE.value}:RuntimeError": 1,
    }
    clues_errors = [r for r in caplog.records if r.name == "opentelemetry_instrumentation_clues"]
    assert len(clues_errors) == len(counts)  # once per kind, not once per job
    assert all("clues bug" in r.getMessage() for r in clues_errors)


def test_a_failing_log_record_costs_neither_the_span_event_nor_the_job(redis_conn, captured, instrumented, monkeypatch):
    """The span event and the log record of one event are guarded apart (errors.swallow)."""
    from opentelemetry.sdk._logs import Logger as SdkLogger

    def broken(*args, **kwargs):
        raise RuntimeError("log pipeline bug")

    monkeypatch.setattr(SdkLogger, "emit", broken)
    queue = Queue("default", connection=redis_conn)
    job = queue.enqueue(jobs.add, 2, 3)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)

    assert job.get_status(refresh=True) == "finished" and job.return_value() == 5
    events = {span.name: [event.name for event in span.events] for span in captured.finished_spans()}
    assert events == {
        "send default": ["enqueued"],
        "process default": ["dequeued", "perform_started", "perform_finished"],
    }
    assert CluesInstrumentor.error_counts() == {f"{Place.LOG_RECORD.value}:RuntimeError": 4}


def test_swallow_reports_clues_failures_and_lets_rq_control_flow_through(instrumented):
    """errors.swallow (the hot paths' except clause) keeps rq's timeouts going, as guarded does."""
    from rq.timeouts import JobTimeoutException

    from opentelemetry_instrumentation_clues.runtime.safety import errors

    with pytest.raises(JobTimeoutException):
        errors.swallow(Place.LOG_RECORD, JobTimeoutException("the job's time is up"))
    errors.swallow(Place.LOG_RECORD, RuntimeError("a bug of ours"))
    assert CluesInstrumentor.error_counts() == {f"{Place.LOG_RECORD.value}:RuntimeError": 1}


def test_invalid_propagation_setting_is_a_clear_error():
    with pytest.raises(ValueError, match="propagation must be one of link, child, none"):
        CluesInstrumentor().instrument(propagation="sideways")
    CluesInstrumentor().uninstrument()
