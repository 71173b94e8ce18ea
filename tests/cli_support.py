"""Helpers for the ``clues`` CLI tests: write legacy event lines exactly as the seed format has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BASE_TIME = datetime(2013, 6, 4, 20, 59, 58, tzinfo=timezone.utc)


def ts(offset_seconds: float = 0) -> str:
    """Whole-second UTC timestamp, as the seed writes it."""
    moment = BASE_TIME + timedelta(seconds=int(offset_seconds))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def event_line(
    event_type: str,
    event_hash: str,
    *,
    at: float = 0,
    queue: str = "test_queue",
    worker_class: str = "tests.jobs.add",
    args: list[Any] | None = None,
    hostname: str = "worker-1",
    process: int = 30731,
    **metadata: Any,
) -> str:
    """One JSON line, top-level keys in the seed's order, metadata keys event_hash/hostname/process first."""
    meta: dict[str, Any] = {"event_hash": event_hash, "hostname": hostname, "process": process}
    meta.update(metadata)
    obj = {
        "event_type": event_type,
        "timestamp": ts(at),
        "queue": queue,
        "metadata": meta,
        "worker_class": worker_class,
        "args": [1, 2] if args is None else args,
    }
    return json.dumps(obj, separators=(",", ":"))


def failure_meta(time_to_perform: float, exception: str = "ZeroDivisionError") -> dict[str, Any]:
    return {
        "time_to_perform": time_to_perform,
        "exception": exception,
        "message": "division by zero",
        "backtrace": ["tests/jobs.py:12:in `div'", "rq/job.py:1300:in `perform'"],
    }


def job_lines(
    event_hash: str,
    outcomes: list[str],
    tiqs: list[float],
    ttps: list[float],
    *,
    at: float = 0,
    queue: str = "test_queue",
    worker_class: str = "tests.jobs.add",
    with_attempt: bool = True,
) -> list[str]:
    """All lines of one job: enqueued, then per attempt dequeued, perform_started, finished/failed."""
    common = {"queue": queue, "worker_class": worker_class}
    lines = [event_line("enqueued", event_hash, at=at, hostname="web-1", process=100, **common)]
    clock = at
    for attempt, (outcome, tiq, ttp) in enumerate(zip(outcomes, tiqs, ttps, strict=True), 1):
        extra = {"attempt": attempt} if with_attempt else {}
        clock += tiq
        lines.append(event_line("dequeued", event_hash, at=clock, time_in_queue=tiq, **extra, **common))
        lines.append(event_line("perform_started", event_hash, at=clock, process=30800 + attempt, **extra, **common))
        clock += ttp
        if outcome == "ok":
            lines.append(
                event_line(
                    "perform_finished",
                    event_hash,
                    at=clock,
                    process=30800 + attempt,
                    time_to_perform=ttp,
                    **extra,
                    **common,
                )
            )
        else:
            lines.append(
                event_line(
                    "failed",
                    event_hash,
                    at=clock,
                    process=30800 + attempt,
                    **failure_meta(ttp),
                    **extra,
                    **common,
                )
            )
    return lines


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_cli(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m opentelemetry_instrumentation_clues.cli ARGS`` in a subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "opentelemetry_instrumentation_clues.cli", *args],
        input=stdin,
        capture_output=True,
        env=cli_env(),
        cwd=REPO_ROOT,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    )
