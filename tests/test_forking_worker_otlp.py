"""End to end: `opentelemetry-instrument` producer and forking `rq worker` exporting OTLP to a real receiver."""

from __future__ import annotations

import subprocess
from collections import defaultdict

import pytest
import redis
from rq import Queue
from rq.job import Job

from opentelemetry_instrumentation_clues.runtime import grpc_relay
from tests.otlp_receiver import Received, otlp_receiver
from tests.processes import enqueue_cmd, env_with, instrumented, rq_worker_cmd, run

SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]


def events_by_hash(received: Received) -> dict[str, list]:
    grouped: dict[str, list] = defaultdict(list)
    for record in sorted(received.logs, key=lambda r: r.time_unix_nano):
        grouped[record.attributes["clues.event_hash"]].append(record)
    return grouped


def run_jobs(
    receiver, redis_url: str, func: str, count: int, *args: str, queue: str = "e2e", **env: str
) -> subprocess.CompletedProcess[str]:
    """Enqueue and work the jobs; returns the finished worker process."""
    run(instrumented(*enqueue_cmd(redis_url, queue, func, count, *args)), env_with(receiver.otel_env("producer")))
    return run(instrumented(*rq_worker_cmd(redis_url, queue)), env_with({**receiver.otel_env("worker"), **env}))


def clues_errors(process: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in process.stderr.splitlines() if "clues: " in line]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_one_job_through_forking_worker(redis_url, protocol):
    with otlp_receiver(protocol) as receiver:
        run_jobs(receiver, redis_url, "tests.jobs.add", 1, "2", "3")
        received = receiver.wait_for(lambda r: len(r.logs) >= 4 and len(r.spans) >= 2)

    (event_hash, records), *others = events_by_hash(received).items()
    assert not others
    assert [r.attributes["clues.event_type"] for r in records] == SUCCESS
    assert [r.event_name for r in records] == [f"rq.job.{t}" for t in SUCCESS]
    assert {r.trace_id for r in records} == {event_hash}

    spans = {s.name: s for s in received.spans}
    assert set(spans) == {"send e2e", "process e2e"}
    assert spans["send e2e"].trace_id == event_hash == spans["process e2e"].trace_id
    assert spans["process e2e"].parent_span_id == spans["send e2e"].span_id
    assert [e[0] for e in spans["send e2e"].events] == ["enqueued"]
    assert [e[0] for e in spans["process e2e"].events] == SUCCESS[1:]

    by_type = {r.attributes["clues.event_type"]: r.attributes for r in records}
    dequeuing_pid = by_type["dequeued"]["process.pid"]
    horse_pids = {by_type[t]["process.pid"] for t in ("perform_started", "perform_finished")}
    assert len(horse_pids) == 1 and dequeuing_pid not in horse_pids
    assert by_type["enqueued"]["process.pid"] not in horse_pids | {dequeuing_pid}
    assert by_type["perform_finished"]["clues.time_to_perform"] >= 0
    assert by_type["dequeued"]["clues.time_in_queue"] >= 0
    assert by_type["enqueued"]["rq.job.args"] == "[2,3]"
    assert records[0].resource["service.name"] == "producer"
    assert records[1].resource["service.name"] == "worker"


def test_failing_job_through_forking_worker(redis_url):
    with otlp_receiver() as receiver:
        run_jobs(receiver, redis_url, "tests.jobs.fail", 1, "forked failure")
        received = receiver.wait_for(lambda r: len(r.logs) >= 4 and len(r.spans) >= 2)

    records = next(iter(events_by_hash(received).values()))
    assert [r.attributes["clues.event_type"] for r in records] == ["enqueued", "dequeued", "perform_started", "failed"]
    failed = records[-1].attributes
    assert failed["exception.type"] == "ValueError"
    assert failed["exception.message"] == "forked failure"
    assert "raise ValueError(message)" in failed["exception.stacktrace"]
    process = next(s for s in received.spans if s.name == "process e2e")
    assert process.status_code == 2  # STATUS_CODE_ERROR
    assert process.attributes["error.type"] == "ValueError"


def test_two_hundred_jobs_lose_nothing(redis_url):
    jobs = 200
    with otlp_receiver() as receiver:
        worker = run_jobs(receiver, redis_url, "tests.jobs.add", jobs, "1", "1")
        # A horse that could not flush in time says so (and its job's telemetry is gone).
        assert clues_errors(worker) == []
        received = receiver.wait_for(lambda r: len(r.logs) >= 4 * jobs and len(r.spans) >= 2 * jobs, timeout=120)

    grouped = events_by_hash(received)
    assert len(grouped) == jobs
    assert all([r.attributes["clues.event_type"] for r in records] == SUCCESS for records in grouped.values())
    assert len({s.trace_id for s in received.spans}) == jobs
    assert len(received.spans) == 2 * jobs


def test_a_horse_killed_mid_job_has_told_its_story(redis_url):
    """SIGKILL, as the OOM killer sends it: the horse already reported perform_started."""
    with otlp_receiver() as receiver:
        run_jobs(receiver, redis_url, "tests.jobs.kill_own_horse", 1)
        received = receiver.wait_for(lambda r: len(r.logs) >= 4 and len(r.spans) >= 2)

    records = next(iter(events_by_hash(received).values()))
    story = ["enqueued", "dequeued", "perform_started", "failed"]
    assert [r.attributes["clues.event_type"] for r in records] == story
    process = next(s for s in received.spans if s.name == "process e2e")
    assert [e[0] for e in process.events] == story[1:]
    started, failed = records[2].attributes, records[3].attributes
    assert started["process.pid"] != records[1].attributes["process.pid"]  # the horse's, not the worker's
    assert failed["error.type"] == "WorkHorseKilled" and "exception.type" not in failed
    assert "signal 9" in failed["exception.message"]
    assert failed["clues.time_to_perform"] > 0
    assert records[3].time_unix_nano >= records[2].time_unix_nano


def test_horses_export_nothing_when_jobs_make_no_spans_of_their_own(redis_url):
    """The worker publishes what its horses report: with exports only at shutdown, the worker
    makes one request per signal for all its jobs, where a horse flushing would make one per job."""
    jobs = 20
    quiet = {"OTEL_BSP_SCHEDULE_DELAY": "600000", "OTEL_BLRP_SCHEDULE_DELAY": "600000"}
    with otlp_receiver() as receiver:
        run_jobs(receiver, redis_url, "tests.jobs.add", jobs, "1", "1", **quiet)
        received = receiver.wait_for(lambda r: len(r.logs) >= 4 * jobs and len(r.spans) >= 2 * jobs)

    worker_spans = [s for s in received.spans if s.resource["service.name"] == "worker"]
    assert len(worker_spans) == jobs
    # The producer flushes once at exit; the worker once when it stops (batches of up to 512).
    assert received.trace_requests == 2
    assert received.log_requests == 2


def test_a_job_with_spans_of_its_own_still_gets_them_exported_from_its_horse(redis_url):
    with otlp_receiver() as receiver:
        run_jobs(receiver, redis_url, "tests.jobs.traced_child", 1)
        received = receiver.wait_for(lambda r: len(r.logs) >= 4 and len(r.spans) >= 3)

    spans = {s.name: s for s in received.spans}
    process = spans["process e2e"]
    (child,) = [s for s in received.spans if s.name not in {"send e2e", "process e2e"}]
    assert child.parent_span_id == process.span_id and child.trace_id == process.trace_id
    # The horse is an instance of its own, as the SDK makes every forked process one (clues
    # re-detects it without the SDK's thread pool: runtime/fork_resources.py).
    instance = "service.instance.id"
    assert child.resource["service.name"] == process.resource["service.name"] == "worker"
    assert child.resource[instance] and process.resource[instance]
    assert child.resource[instance] != process.resource[instance]


@pytest.mark.parametrize("fork_support", ["", "false"], ids=["grpc-fork-handlers-on", "off"])
def test_a_forking_worker_exporting_over_grpc_relays_its_rpcs_while_grpc_handles_forks(redis_url, fork_support):
    """With gRPC's fork handlers on (as installed) the worker makes its RPCs in a relay process,
    so no horse is forked inside one (runtime/grpc_relay.py); with them off it exports in-process."""
    queue = Queue("grpc-relay", connection=redis.Redis.from_url(redis_url))
    with otlp_receiver("grpc") as receiver:
        env = {"GRPC_ENABLE_FORK_SUPPORT": fork_support} if fork_support else {}
        worker = run_jobs(receiver, redis_url, "tests.jobs.worker_children", 1, queue=queue.name, **env)
        received = receiver.wait_for(lambda r: len(r.logs) >= 4 and len(r.spans) >= 2)
    (job_id,) = queue.finished_job_registry.get_job_ids()
    children = Job.fetch(job_id, connection=queue.connection).return_value()
    assert children.count(grpc_relay.PROCESS_NAME) == (1 if fork_support == "" else 0), children
    assert len(events_by_hash(received)) == 1  # the worker's records arrived, through the relay or not
    assert "GRPC_ENABLE_FORK_SUPPORT" not in worker.stderr  # no warning: nothing left to warn about
    assert "skipping fork() handlers" not in worker.stderr
