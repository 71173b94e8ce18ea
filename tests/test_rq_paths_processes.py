"""Every RQ path that needs real worker processes, end to end at a real OTLP receiver."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest
import rq
from redis import Redis
from rq import Queue
from rq.command import send_stop_job_command
from rq.job import Job

from tests.otlp_receiver import Received, otlp_receiver
from tests.processes import enqueue_cmd, env_with, instrumented, rq_worker_cmd, run, running_worker, tool

SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]


def by_hash(received: Received) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for record in sorted(received.logs, key=lambda r: r.time_unix_nano):
        grouped[record.attributes["clues.event_hash"]].append(record.attributes)
    return grouped


def event_types(received: Received) -> list[list[str]]:
    return [[a["clues.event_type"] for a in events] for events in by_hash(received).values()]


def await_status(job: Job, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while job.get_status(refresh=True) != status:
        assert time.monotonic() < deadline, f"job {job.id} is {job.get_status()}, not {status}"
        time.sleep(0.05)  # polling Redis for the state change


def test_job_timeout_is_a_failed_event_from_the_horse(redis_url):
    with otlp_receiver() as receiver:
        env = env_with(receiver.otel_env("timeouts"))
        queue = Queue("slow", connection=Redis.from_url(redis_url))
        code = (
            "from redis import Redis; from rq import Queue; "
            f"Queue('slow', connection=Redis.from_url('{redis_url}')).enqueue('tests.jobs.sleep', 10, job_timeout=1)"
        )
        run(instrumented(sys.executable, "-c", code), env)
        run(instrumented(*rq_worker_cmd(redis_url, "slow")), env)
        received = receiver.wait_for(lambda r: any(t[-1:] == ["failed"] for t in event_types(r)))
    (events,) = by_hash(received).values()
    failed = events[-1]
    assert [e["clues.event_type"] for e in events] == ["enqueued", "dequeued", "perform_started", "failed"]
    assert failed["exception.type"] == "rq.timeouts.JobTimeoutException"
    assert 1 <= failed["clues.time_to_perform"] < 10
    assert failed["process.pid"] == events[2]["process.pid"] != events[1]["process.pid"]
    assert len(queue.failed_job_registry) == 1


def test_stopped_job_is_failed_by_the_worker_and_its_callback_is_in_the_trace(redis_url):
    connection = Redis.from_url(redis_url)
    with otlp_receiver() as receiver:
        env = env_with(receiver.otel_env("stops"))
        code = (
            "from redis import Redis; from rq import Queue, Callback; "
            f"print(Queue('stoppable', connection=Redis.from_url('{redis_url}')).enqueue("
            "'tests.jobs.sleep', 30, on_stopped=Callback('tests.jobs.on_stopped_span')).id)"
        )
        job_id = run(instrumented(sys.executable, "-c", code), env).stdout.strip()
        worker = subprocess.Popen(
            instrumented(*rq_worker_cmd(redis_url, "stoppable")), env=env, stderr=subprocess.PIPE, text=True
        )
        job = Job.fetch(job_id, connection=connection)
        await_status(job, "started")
        send_stop_job_command(connection, job_id)
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
        received = receiver.wait_for(
            lambda r: (
                any(t[-1:] == ["failed"] for t in event_types(r))
                and any(s.name == "on_stopped callback" for s in r.spans)
            )
        )
    (events,) = by_hash(received).values()
    # The horse reported perform_started before the job began; the worker saw it stopped.
    assert [e["clues.event_type"] for e in events] == ["enqueued", "dequeued", "perform_started", "failed"]
    failed = events[-1]
    assert failed["error.type"] == "JobStopped" and "exception.type" not in failed
    assert failed["process.pid"] == events[1]["process.pid"]  # the worker, not the stopped horse
    (callback,) = [s for s in received.spans if s.name == "on_stopped callback"]
    (process,) = [s for s in received.spans if s.name == "process stoppable"]
    assert callback.trace_id == process.trace_id and callback.parent_span_id == process.span_id
    assert process.status_code == 2


# rq < 2.7's SpawnWorker cannot start a horse with redis-py 8 (its child source embeds the
# connection kwargs unquoted: a SyntaxError in plain rq too), so it is tested from 2.7 on.
SPAWN_WORKS = tuple(int(p) for p in rq.__version__.split(".")[:2]) >= (2, 7)


@pytest.mark.parametrize(
    "flags",
    [
        *([pytest.param(["-w", "rq.worker.SpawnWorker"], id="SpawnWorker")] if SPAWN_WORKS else []),
        pytest.param(
            ["-w", "tests.custom_classes.AuditedWorker", "-j", "tests.custom_classes.AuditedJob",
             "--queue-class", "tests.custom_classes.AuditedQueue"],
            id="custom-classes",
        ),
    ],
)  # fmt: skip
def test_worker_variants_publish_the_whole_lifecycle(redis_url, flags):
    with otlp_receiver() as receiver:
        env = env_with(receiver.otel_env("variants"))
        run(instrumented(*enqueue_cmd(redis_url, "variants", "tests.jobs.add", 3, "1", "2")), env)
        run(instrumented(tool("rq"), "worker", "--burst", "-u", redis_url, *flags, "variants"), env)
        received = receiver.wait_for(lambda r: sum(t == SUCCESS for t in event_types(r)) == 3)
    for events in by_hash(received).values():
        assert [e["clues.event_type"] for e in events] == SUCCESS
        assert events[1]["process.pid"] != events[2]["process.pid"]  # dequeued in the worker, performed in a horse
    processes = [s for s in received.spans if s.name == "process variants"]
    assert len(processes) == 3
    assert all(any(e[0] == "dequeued" for e in s.events) for s in processes)


def test_worker_pool_publishes_every_job(redis_url):
    with otlp_receiver() as receiver:
        env = env_with(receiver.otel_env("pool"))
        run(instrumented(*enqueue_cmd(redis_url, "pooled", "tests.jobs.add", 20, "1", "2")), env)
        run(instrumented(tool("rq"), "worker-pool", "--burst", "-n", "2", "-u", redis_url, "pooled"), env)
        received = receiver.wait_for(lambda r: sum(t == SUCCESS for t in event_types(r)) == 20)
    assert len(by_hash(received)) == 20


def test_scheduler_process_enqueues_scheduled_jobs_in_their_trace(redis_url):
    with otlp_receiver() as receiver:
        env = env_with(receiver.otel_env("scheduled"))
        code = (
            "from datetime import timedelta; from redis import Redis; from rq import Queue; "
            f"Queue('later', connection=Redis.from_url('{redis_url}'))"
            ".enqueue_in(timedelta(seconds=1), 'tests.jobs.add', 1, 2)"
        )
        run(instrumented(sys.executable, "-c", code), env)
        worker = subprocess.Popen(
            instrumented(tool("rq"), "worker", "--with-scheduler", "-u", redis_url, "later"),
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            received = receiver.wait_for(lambda r: ["scheduled", *SUCCESS] in event_types(r), timeout=90)
        finally:
            worker.terminate()
            worker.communicate(timeout=60)
    (events,) = by_hash(received).values()
    assert [e["clues.event_type"] for e in events] == ["scheduled", *SUCCESS]
    (schedule,) = [s for s in received.spans if s.name == "schedule later"]
    assert schedule.trace_id == events[0]["clues.event_hash"]


def test_otel_propagators_environment_variable_is_honoured(redis_url):
    connection = Redis.from_url(redis_url)
    with otlp_receiver() as receiver:
        env = env_with({**receiver.otel_env("b3"), "OTEL_PROPAGATORS": "b3multi"})
        job_id = run(instrumented(*enqueue_cmd(redis_url, "b3", "tests.jobs.add", 1, "1", "2")), env).stdout.strip()
        carrier = Job.fetch(job_id, connection=connection).meta["clues"]["carrier"]
        assert {key.lower() for key in carrier} >= {"x-b3-traceid", "x-b3-spanid"}
        run(instrumented(*rq_worker_cmd(redis_url, "b3")), env)
        received = receiver.wait_for(lambda r: len(r.spans) >= 2 and len(r.logs) >= 4)
    send = next(s for s in received.spans if s.name == "send b3")
    process = next(s for s in received.spans if s.name == "process b3")
    assert process.trace_id == send.trace_id and process.parent_span_id == send.span_id


def test_abandoned_job_fails_when_the_registry_is_cleaned(redis_url, captured, instrumented):
    import os
    import signal

    from rq.registry import StartedJobRegistry

    connection = Redis.from_url(redis_url)
    queue = Queue("abandoned", connection=connection)
    job = queue.enqueue("tests.jobs.sleep_noting_pid", 60)
    worker = subprocess.Popen(rq_worker_cmd(redis_url, "abandoned"), env=env_with({}), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while "horse_pid" not in job.get_meta(refresh=True):
        assert time.monotonic() < deadline and worker.poll() is None
        time.sleep(0.05)  # polling Redis until the horse has noted its pid
    os.kill(worker.pid, signal.SIGKILL)  # the worker and its horse die together, reporting nothing
    os.kill(job.meta["horse_pid"], signal.SIGKILL)
    worker.wait(30)

    StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 100_000)

    assert job.get_status(refresh=True) == "failed"
    (failed,) = captured.log_attributes()[1:]  # after the enqueued event of this process
    assert failed["clues.event_type"] == "failed"
    assert failed["exception.type"] == failed["error.type"] == "rq.exceptions.AbandonedJobError"
    assert failed["clues.event_hash"] == captured.log_attributes()[0]["clues.event_hash"]
    assert failed["rq.job.will_retry"] is False
    (process,) = [s for s in captured.finished_spans() if s.name == "process abandoned"]
    assert process.status.status_code.name == "ERROR"


def test_cold_shutdown_fails_the_running_attempt_and_exports_its_span(redis_url):
    """A second Ctrl-C takes the horse down with the worker: the attempt ends as failed, with
    the reason, and its process span is exported before the worker exits."""
    with otlp_receiver() as receiver:
        env = env_with(receiver.otel_env("cold"))
        queue = Queue("cold", connection=Redis.from_url(redis_url))
        job = queue.enqueue("tests.jobs.sleep", 60)
        with running_worker(redis_url, "cold", env) as worker:
            await_status(job, "started")
            receiver.wait_for(lambda r: any(e["clues.event_type"] == "perform_started" for e in log_attributes(r)))
            worker.process.send_signal(signal.SIGINT)  # warm: wait for the job
            time.sleep(1.1)  # rq ignores a second signal within one second of the first
            worker.process.send_signal(signal.SIGINT)  # cold: kill the horse, stop now
            assert worker.process.wait(30) == 0, worker.stderr()
        received = receiver.wait_for(lambda r: any(s.name == "process cold" for s in r.spans))
    (events,) = by_hash(received).values()  # enqueued by this uninstrumented test: the worker's story
    assert [e["clues.event_type"] for e in events] == ["dequeued", "perform_started", "failed"]
    failed = events[-1]
    assert failed["error.type"] == "WorkerShutdown" and "exception.type" not in failed
    assert failed["clues.time_to_perform"] > 0
    (process,) = [s for s in received.spans if s.name == "process cold"]
    assert process.status_code == 2
    assert [e[0] for e in process.events] == ["dequeued", "perform_started", "failed"]


def log_attributes(received) -> list[dict]:
    return [record.attributes for record in received.logs]
