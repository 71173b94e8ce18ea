"""Load: 4 forking workers x 25k jobs with OTLP and the LogPublisher on.

Every job has its full event set at the receiver and in the file; the workers' RSS,
file descriptors and threads stay flat. Slow (CI runs it once, on the newest rq);
CLUES_LOAD_JOBS_PER_WORKER scales it down for a quick local run.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from oteltest.sink import HttpSink
from oteltest.sink.handler import RequestHandler

from tests.otlp_receiver import free_port
from tests.processes import env_with, instrumented, rq_worker_cmd, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

WORKERS = 4
JOBS_PER_WORKER = int(os.environ.get("CLUES_LOAD_JOBS_PER_WORKER", "25000"))
EVENTS = ("enqueued", "dequeued", "perform_started", "perform_finished")


class CountingReceiver(RequestHandler):
    """Keeps only what the test checks: the event types seen per event_hash, and span counts."""

    def __init__(self) -> None:
        self.events: dict[str, Counter] = defaultdict(Counter)
        self.spans = 0
        self.lock = threading.Lock()

    def handle_logs(self, request, headers) -> None:
        with self.lock:
            for resource_logs in request.resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        attributes = {kv.key: kv.value.string_value for kv in record.attributes}
                        self.events[attributes["clues.event_hash"]][attributes["clues.event_type"]] += 1

    def handle_trace(self, request, headers) -> None:
        with self.lock:
            self.spans += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)

    def handle_metrics(self, request, headers) -> None:
        pass

    def complete(self, jobs: int) -> int:
        with self.lock:
            return sum(1 for counts in self.events.values() if all(counts[e] == 1 for e in EVENTS))


def sample(pid: int) -> dict[str, Any]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    # A worker holds a few descriptors while a job runs (the horse's report pipe, a pidfd):
    # the fewest over half a second of readings is what stays open between jobs. A leak
    # grows with the jobs, so its minimum grows too.
    readings = []
    for _ in range(10):
        readings.append(sorted(_fd_target(pid, fd) for fd in os.listdir(f"/proc/{pid}/fd")))
        time.sleep(0.05)
    fewest = min(readings, key=len)
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(fewest),
        "fd_targets": fewest,  # for the failure message: which kind of descriptor piles up
    }


def _fd_target(pid: int, fd: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:  # closed since the listing
        return "?"


def test_four_workers_many_jobs_lose_nothing_and_leak_nothing(redis_url, tmp_path):
    total = WORKERS * JOBS_PER_WORKER
    port = free_port()
    receiver = CountingReceiver()
    sink = HttpSink(receiver, logging.getLogger("load"), port=port)
    sink.start()
    log = tmp_path / "clues.log"
    env = env_with(
        {
            "OTEL_SERVICE_NAME": "load",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_PYTHON_CLUES_PUBLISHER": f"file://{log}",
            "OTEL_PYTHON_CLUES_FLUSH_TIMEOUT_MILLIS": "10000",
        }
    )
    try:
        run(
            instrumented(sys.executable, "-m", "tests.enqueue_mix", redis_url, "load", str(total), "0", "0"),
            env,
            timeout=1800,
        )
        workers = [
            subprocess.Popen(
                instrumented(*rq_worker_cmd(redis_url, "load")),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(WORKERS)
        ]
        early: dict[int, dict[str, Any]] = {}
        late: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 3600
        while any(w.poll() is None for w in workers):
            assert time.monotonic() < deadline
            done = receiver.complete(total)
            for w in workers:
                if w.poll() is not None:
                    continue
                if done >= total // 10 and w.pid not in early:
                    early[w.pid] = sample(w.pid)
                elif done >= total * 8 // 10 and w.pid not in late:
                    late[w.pid] = sample(w.pid)
            time.sleep(0.5)  # sampling the workers while they run
        for w in workers:
            _, stderr = w.communicate()
            assert w.returncode == 0, stderr
            assert b"clues:" not in stderr, stderr
        deadline = time.monotonic() + 120
        while receiver.complete(total) < total and time.monotonic() < deadline:
            time.sleep(0.2)  # the last exports arrive as the workers exit
    finally:
        sink.stop()

    assert receiver.complete(total) == total
    assert len(receiver.events) == total
    assert receiver.spans == 2 * total
    lines = Counter()
    for line in log.read_text().splitlines():
        lines[line.split('"event_type":"', 1)[1].split('"', 1)[0]] += 1
    assert lines == {event: total for event in EVENTS}

    assert set(early) == set(late) and len(late) == WORKERS
    for pid in late:
        assert late[pid]["rss_kb"] - early[pid]["rss_kb"] < 5 * 1024, (early[pid], late[pid])
        # A leak grows with the jobs (thousands between the samples); a lazily opened
        # connection or a thread started once is a constant.
        assert late[pid]["fds"] - early[pid]["fds"] <= 2, (early[pid], late[pid])
        assert late[pid]["threads"] - early[pid]["threads"] <= 1, (early[pid], late[pid])
