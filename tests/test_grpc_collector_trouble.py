"""A forking worker exporting over gRPC to a collector in trouble: no job is harmed.

gRPC's fork handlers give up when another thread is inside gRPC at the moment of
``fork()`` ("Other threads are currently calling into gRPC, skipping fork()
handlers"), and the child can then crash in its first steps, before the job runs
(seen: 2-8 of 200 jobs lost with a hung collector, with or without clues). A hung
collector keeps the worker's export thread inside gRPC nearly all the time.

Each case runs both ways a user runs a worker: as installed (the handlers on: clues
makes the worker's RPCs in a relay process, runtime/grpc_relay.py) and with
``GRPC_ENABLE_FORK_SUPPORT=false`` (the handlers off: the worker exports in-process,
safe because horses hand clues' telemetry to the worker and never use gRPC for it).
"""

from __future__ import annotations

import contextlib

import pytest
import redis
from rq import Queue

from tests.otlp_receiver import free_port, hung_collector, otlp_receiver
from tests.processes import enqueue_cmd, env_with, instrumented, run, running_worker, wait_until_done

JOBS = 200
AFTER_RECOVERY = 20
SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]

pytestmark = pytest.mark.slow  # 200 forked jobs per collector mode: run once, on the newest rq


SKIPPED_HANDLERS = "Other threads are currently calling into gRPC, skipping fork() handlers"
HANDLERS = {"handlers-on": None, "handlers-off": "false"}  # GRPC_ENABLE_FORK_SUPPORT


def grpc_env(service: str, port: int, handlers: str = "handlers-off") -> dict[str, str]:
    env = env_with(
        {
            "OTEL_SERVICE_NAME": service,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2",  # seconds: a failing export gives up sooner
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
        }
    )
    env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    if HANDLERS[handlers] is not None:
        env["GRPC_ENABLE_FORK_SUPPORT"] = HANDLERS[handlers]
    return env


def enqueue(redis_url: str, queue: str, count: int, env: dict[str, str]) -> None:
    run(instrumented(*enqueue_cmd(redis_url, queue, "tests.jobs.add", count, "1", "1")), env)


def no_exports(service: str) -> dict[str, str]:
    return env_with({"OTEL_SERVICE_NAME": service, "OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})


def complete_stories(received) -> int:
    stories: dict[str, list[str]] = {}
    for record in sorted(received.logs, key=lambda r: r.time_unix_nano):
        stories.setdefault(record.attributes["clues.event_hash"], []).append(record.attributes["clues.event_type"])
    return sum(story == SUCCESS for story in stories.values())


@pytest.mark.parametrize("handlers", HANDLERS)
@pytest.mark.parametrize("trouble", ["down", "hung"])
def test_collector_outage_changes_no_job_and_later_jobs_arrive_complete(redis_url, trouble, handlers):
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(f"grpc-{trouble}-{handlers}", connection=connection)
    port = free_port()
    outage = hung_collector(port) if trouble == "hung" else contextlib.nullcontext()
    with running_worker(redis_url, queue.name, grpc_env("worker", port, handlers)) as worker:
        with outage:
            enqueue(redis_url, queue.name, JOBS, no_exports("producer"))
            wait_until_done(queue, JOBS, worker)
        assert queue.failed_job_registry.count == 0
        assert queue.finished_job_registry.count == JOBS
        assert SKIPPED_HANDLERS not in worker.stderr()  # no fork happened inside an RPC

        with otlp_receiver("grpc", port=port) as receiver:
            enqueue(redis_url, queue.name, AFTER_RECOVERY, grpc_env("producer", port))
            wait_until_done(queue, JOBS + AFTER_RECOVERY, worker)

            # gRPC reconnects with a backoff of its own after the outage: give it time.
            def complete(received) -> bool:
                processes = [s for s in received.spans if s.name == f"process {queue.name}"]
                return complete_stories(received) >= AFTER_RECOVERY and len(processes) >= AFTER_RECOVERY

            receiver.wait_for(complete, timeout=180)
    assert queue.failed_job_registry.count == 0


@pytest.mark.parametrize("handlers", HANDLERS)
def test_slow_collector_changes_no_job_and_everything_arrives(redis_url, handlers):
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(f"grpc-slow-{handlers}", connection=connection)
    with otlp_receiver("grpc", delay_seconds=0.15) as receiver:
        with running_worker(redis_url, queue.name, grpc_env("worker", receiver.port, handlers)) as worker:
            enqueue(redis_url, queue.name, JOBS, grpc_env("producer", receiver.port))
            wait_until_done(queue, JOBS, worker)
            received = receiver.wait_for(lambda r: len(r.logs) >= 4 * JOBS, timeout=180)
        assert queue.failed_job_registry.count == 0
        assert queue.finished_job_registry.count == JOBS
        assert complete_stories(received) == JOBS
        assert SKIPPED_HANDLERS not in worker.stderr()
