"""Legacy output from real processes, configured by environment variables alone."""

from __future__ import annotations

import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from tests.processes import enqueue_cmd, env_with, instrumented, rq_worker_cmd, run

SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]


def clues_env(path: Path) -> dict[str, str]:
    return env_with(
        {
            "OTEL_SERVICE_NAME": "legacy-e2e",
            "OTEL_PYTHON_CLUES_PUBLISHER": f"file://{path}",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
    )


def lines_of(*paths: Path) -> list[str]:
    return [line for path in paths if path.exists() for line in path.read_text().splitlines()]


def test_env_variables_alone_turn_on_the_legacy_file(redis_url, tmp_path):
    path = tmp_path / "rq-clues.log"
    env = clues_env(path)
    run(instrumented(*enqueue_cmd(redis_url, "legacy", "tests.jobs.add", 2, "4", "5")), env)
    run(instrumented(*enqueue_cmd(redis_url, "legacy", "tests.jobs.retry_until_exhausted", 1)), env)
    run(instrumented(*rq_worker_cmd(redis_url, "legacy")), env)
    events = [json.loads(line) for line in lines_of(path)]
    grouped = defaultdict(list)
    for event in events:
        grouped[(event["worker_class"], event["metadata"]["event_hash"])].append(event["event_type"])
    # The forking worker writes its horses' lines too, as they report: each job's lines
    # are in the file in the order they happened, a retry's enqueue after the failure.
    retried = ["enqueued", "dequeued", "perform_started", "failed"] * 2
    assert sorted(grouped.values()) == sorted([SUCCESS, SUCCESS, retried])
    assert {event["args"][0] for event in events if event["worker_class"] == "tests.jobs.add"} == {4}


def test_four_forking_workers_append_to_one_file_through_a_rotation(redis_url, tmp_path):
    jobs_per_worker, workers = 500, 4
    total = jobs_per_worker * workers
    path = tmp_path / "rq-clues.log"
    rotated = tmp_path / "rq-clues.log.1"
    env = clues_env(path)
    run(instrumented(*enqueue_cmd(redis_url, "shared", "tests.jobs.add", total, "1", "2")), env)

    procs = [
        subprocess.Popen(
            instrumented(*rq_worker_cmd(redis_url, "shared")),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(workers)
    ]
    # Rotate (as logrotate's default "create" mode does) once the workers are well under way.
    deadline = time.monotonic() + 120
    while len(lines_of(path)) < total + total // 2 and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.05)  # polling the file the workers write; no event to await here
    path.rename(rotated)
    for proc in procs:
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr

    lines = lines_of(rotated, path)
    assert path.exists() and rotated.exists()  # the rotation happened mid-run
    assert len(lines_of(path)) > 0 and len(lines_of(rotated)) > total
    assert len(lines) == 4 * total
    events = [json.loads(line) for line in lines]  # every line whole, valid JSON
    grouped = defaultdict(list)
    for event in events:
        grouped[event["metadata"]["event_hash"]].append(event["event_type"])
    assert len(grouped) == total
    assert all(sorted(types) == sorted(SUCCESS) for types in grouped.values())
    worker_pids = {e["metadata"]["process"] for e in events if e["event_type"] == "dequeued"}
    assert len(worker_pids) == workers
