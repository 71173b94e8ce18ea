"""Broken sinks: jobs keep their pace, each sink's error is logged once, drops are counted."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time

from rq import Queue, SimpleWorker

from opentelemetry_instrumentation_clues import CluesInstrumentor, LogPublisher, UdpPublisher
from opentelemetry_instrumentation_clues.runtime.safety import Place
from tests import jobs
from tests.monitor_support import PrivateRedis
from tests.otlp_receiver import free_port, otlp_receiver
from tests.processes import enqueue_cmd, env_with, instrumented, rq_worker_cmd, run, running_worker, wait_until_done

JOBS = 20


def test_unreachable_otlp_receiver_does_not_slow_a_forking_worker(redis_url):
    """Jobs with spans of their own: their horses flush those, within a budget that shrinks."""
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = env_with(
        {
            "OTEL_SERVICE_NAME": "no-collector",
            "OTEL_EXPORTER_OTLP_ENDPOINT": dead,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_PYTHON_CLUES_FLUSH_TIMEOUT_MILLIS": "2000",
        }
    )
    run(enqueue_cmd(redis_url, "unreachable", "tests.jobs.traced_child", JOBS), env)
    started = time.monotonic()
    worker = run(instrumented(*rq_worker_cmd(redis_url, "unreachable")), env)
    elapsed = time.monotonic() - started
    # Waiting out the 2 s flush budget in every horse would take 40 s; after the first
    # timeout, horses get 50 ms (and one every 10 s the full 2 s, a probe).
    # (A bound for "does not block", not a benchmark.)
    assert elapsed < 25, elapsed
    # one line for the sink's failure, however many horses met it
    assert worker.stderr.count(f"clues: {Place.FLUSH.value} failed") == 1, worker.stderr
    assert "horses now flush within 50 ms" in worker.stderr
    assert (
        Queue("unreachable", connection=__import__("redis").Redis.from_url(redis_url)).finished_job_registry.count
        == JOBS
    )


def test_full_disk_costs_the_jobs_nothing_and_is_logged_once(redis_conn, caplog):
    publisher = LogPublisher("/dev/full")
    queue = Queue("full", connection=redis_conn)
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(event_publisher=publisher)
    try:
        done = [queue.enqueue(jobs.add, i, 1) for i in range(JOBS)]
        with caplog.at_level(logging.ERROR, logger="opentelemetry_instrumentation_clues"):
            SimpleWorker([queue], connection=redis_conn).work(burst=True)
            instrumentor.force_flush()
    finally:
        instrumentor.uninstrument()
    assert [j.get_status(refresh=True) for j in done] == ["finished"] * JOBS
    legacy = {key: n for key, n in CluesInstrumentor.error_counts().items() if key.startswith("legacy.")}
    assert legacy == {f"{Place.LEGACY_PUBLISHER.value}:OSError": 4 * JOBS}
    assert len([r for r in caplog.records if "/dev/full" in r.getMessage()]) == 1


def test_unreachable_udp_peer_costs_the_jobs_nothing(redis_conn):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: datagrams there are refused
    publisher = UdpPublisher("127.0.0.1", port)
    queue = Queue("udp", connection=redis_conn)
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(event_publisher=publisher)
    try:
        done = [queue.enqueue(jobs.add, i, 1) for i in range(JOBS)]
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
        instrumentor.force_flush()
    finally:
        instrumentor.uninstrument()
    assert [j.get_status(refresh=True) for j in done] == ["finished"] * JOBS
    stats = publisher.stats()
    assert stats["sent"] + stats["dropped"] == 4 * JOBS


def test_worker_survives_a_redis_restart_like_plain_rq(tmp_path):
    """A Redis server of the test's own is restarted under a running instrumented worker."""
    import redis

    server = PrivateRedis(tmp_path)
    url = server.url
    log = tmp_path / "clues.log"
    env = env_with(
        {
            "OTEL_SERVICE_NAME": "restart",
            "OTEL_PYTHON_CLUES_PUBLISHER": f"file://{log}",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
    )
    server.start()
    worker = subprocess.Popen(
        instrumented(sys.executable, "-m", "rq.cli", "worker", "-u", url, "restarted"),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        run(enqueue_cmd(url, "restarted", "tests.jobs.add", 3, "1", "1"), env)
        queue = Queue("restarted", connection=redis.Redis(port=server.port))
        deadline = time.monotonic() + 60
        while queue.finished_job_registry.count < 3:
            assert time.monotonic() < deadline and worker.poll() is None
            time.sleep(0.1)  # polling Redis for the worker's progress
        server.stop()
        server.start()  # empty again: this server keeps nothing on disk
        run(instrumented(*enqueue_cmd(url, "restarted", "tests.jobs.add", 3, "2", "2")), env)
        queue = Queue("restarted", connection=redis.Redis(port=server.port))
        deadline = time.monotonic() + 90
        while queue.finished_job_registry.count < 3:
            assert time.monotonic() < deadline, "the worker did not recover from the restart"
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            time.sleep(0.1)
    finally:
        worker.terminate()
        _, stderr = worker.communicate(timeout=60)
        server.stop()
    assert "clues:" not in stderr  # instrumentation added no failure of its own
    import json

    after = [json.loads(line) for line in log.read_text().splitlines() if '"args":[2,2]' in line]
    assert sorted(e["event_type"] for e in after) == sorted(
        ["enqueued", "dequeued", "perform_started", "perform_finished"] * 3
    )


def test_after_an_outage_a_collector_60ms_away_gets_every_later_jobs_perform_records(redis_url):
    """Once flushes have timed out, horses flush within 50 ms; the perform records come from the
    worker, which exports in the background, so a collector 60 ms away still gets all of them."""
    port = free_port()
    env = env_with(
        {
            "OTEL_SERVICE_NAME": "far-collector",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
        }
    )
    queue = Queue("far", connection=__import__("redis").Redis.from_url(redis_url))
    later = 20
    with running_worker(redis_url, queue.name, env) as worker:
        run(enqueue_cmd(redis_url, queue.name, "tests.jobs.traced_child", 5), env_with({}))  # collector down
        wait_until_done(queue, 5, worker)
        with otlp_receiver(port=port, delay_seconds=0.06) as receiver:
            run(enqueue_cmd(redis_url, queue.name, "tests.jobs.add", later, "1", "1"), env_with({}))
            wait_until_done(queue, 5 + later, worker)
            received = receiver.wait_for(lambda r: len(perform_records(r, "perform_finished")) >= later)
    started, finished = perform_records(received, "perform_started"), perform_records(received, "perform_finished")
    assert len(finished) == later
    assert {r.attributes["clues.event_hash"] for r in started} >= {r.attributes["clues.event_hash"] for r in finished}
    assert "horses now flush within 50 ms" in worker.stderr()


def perform_records(received, event_type: str) -> list:
    return [
        r
        for r in received.logs
        if r.attributes["clues.event_type"] == event_type and r.attributes["rq.job.func_name"] == "tests.jobs.add"
    ]
