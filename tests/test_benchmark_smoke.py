"""The benchmark script runs end to end and prints every row (no timing is asserted: DESIGN §6)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.processes import REPO_ROOT, env_with

ROWS = ["plain-rq", "sdk-only", "clues-drop", "clues-otlp-http", "clues-legacy-log", "otel-instrumentation-rq"]
TARGETS = [
    "enqueue >= 0.90",
    "SimpleWorker >= 0.95",
    "Worker (fork) >= 0.90",
    "redis commands/job equal",
    "RSS growth < 5 MB",
]


def _db_of(url: str) -> int:
    match = re.search(r"(?:/|db=)(\d+)$", url)
    assert match, url
    return int(match.group(1))


@pytest.mark.timeout(300)
def test_quick_benchmark_prints_every_row(redis_url):
    command = [
        sys.executable,
        "benchmarks/throughput.py",
        "--quick",
        "--rounds",
        "1",
        "--redis-url",
        redis_url,
        "--db",
        str(_db_of(redis_url)),
        "--jobs",
        "20",
        "--fork-jobs",
        "3",
        "--rss-jobs",
        "40",
        "--rss-warm",
        "10",
        "--timeout",
        "120",
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env_with({}), capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for row in ROWS:
        assert any(line.startswith(row + " ") for line in lines), f"no row {row!r} in:\n{done.stdout}"
    baseline = next(line for line in lines if line.startswith("plain-rq "))
    assert "not available" not in baseline and "/s" in baseline
    clues = next(line for line in lines if line.startswith("clues-drop "))
    assert "not available" not in clues, clues
    for target in TARGETS:
        assert any(target in line and re.search(r"\b(PASS|MISS)\b", line) for line in lines), target


@pytest.mark.timeout(120)
def test_sdk_floor_prints_the_budgets_and_the_best_possible_ratios(redis_url):
    command = [
        sys.executable,
        "benchmarks/sdk_floor.py",
        "--jobs",
        "50",
        "--worker-jobs",
        "20",
        "--rounds",
        "1",
        "--redis-url",
        redis_url,
        "--db",
        str(_db_of(redis_url)),
    ]
    done = subprocess.run(command, cwd=REPO_ROOT, env=env_with({}), capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    figures = {
        label.strip(): float(value.split()[0])
        for label, value in (re.split(r"\s{2,}(?=-?\d)", line, maxsplit=1) for line in done.stdout.splitlines()[1:])
    }
    for what, target in (("enqueue", "0.90"), ("SimpleWorker", "0.95")):
        assert figures[f"plain {what}"] > 0, done.stdout
        assert figures[f"budget the target leaves ({what} >= {target})"] > 0, done.stdout
        assert 0 < figures[f"best possible {what} ratio"] < 2, done.stdout
    assert figures["SDK calls DESIGN §3 asks for, alone"] > 0, done.stdout
