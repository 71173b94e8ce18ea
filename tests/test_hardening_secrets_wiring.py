"""args_sanitizer / redact_kwargs given to instrument() (or by environment) reach every event.

These need the hooks to pass ``arguments=self.config.arguments`` to ``JobFacts.build``
(instrumentation/enqueue_hooks.py and worker_hooks.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rq import Queue, SimpleWorker

from opentelemetry_instrumentation_clues import CluesInstrumentor
from opentelemetry_instrumentation_clues.runtime.safety import Place
from opentelemetry_instrumentation_clues.telemetry.attributes import ARGS, KWARGS
from opentelemetry_instrumentation_clues.values.redaction import REDACTED, SANITIZER_FAILED
from tests import hardening_jobs
from tests.hardening_jobs import clues_with_log_file

SENTINEL = "hunter2-sentinel"
SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]


def run_jobs(redis_conn, captured, path: Path, count: int = 1, **instrument_kwargs: Any) -> list[dict]:
    with clues_with_log_file(captured, path, **instrument_kwargs):
        queue = Queue("secrets", connection=redis_conn)
        queued = [
            queue.enqueue(
                hardening_jobs.accept,
                args=(SENTINEL, 2),
                kwargs={"password": SENTINEL, "ssn": SENTINEL, "user": "bob"},
                description="secret job",
            )
            for _ in range(count)
        ]
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert all(job.get_status(refresh=True) == "finished" for job in queued)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_sanitizer_given_to_instrument_rewrites_the_arguments_of_every_event(redis_conn, captured, tmp_path):
    lines = run_jobs(
        redis_conn, captured, tmp_path / "clues.log", args_sanitizer=hardening_jobs.sanitize_drop_everything
    )
    assert [line["event_type"] for line in lines] == SUCCESS
    assert all(line["args"] == ["2 args hidden by tests.hardening_jobs.accept"] for line in lines)
    assert all("kwargs" not in line["metadata"] for line in lines)
    assert all(json.loads(a[KWARGS]) == {} for a in captured.log_attributes())
    assert SENTINEL not in (tmp_path / "clues.log").read_text() + repr(captured.log_attributes())


def test_a_sanitizer_from_the_environment(redis_conn, captured, tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_CLUES_ARGS_SANITIZER", "tests.hardening_jobs:sanitize_drop_everything")
    lines = run_jobs(redis_conn, captured, tmp_path / "clues.log")
    assert all(line["args"] == ["2 args hidden by tests.hardening_jobs.accept"] for line in lines)


def test_a_raising_sanitizer_withholds_arguments_and_is_logged_once(redis_conn, captured, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    lines = run_jobs(
        redis_conn, captured, tmp_path / "clues.log", count=3, args_sanitizer=hardening_jobs.sanitizer_that_raises
    )
    assert sorted(line["event_type"] for line in lines) == sorted(SUCCESS * 3)
    assert all(line["args"] == [SANITIZER_FAILED] for line in lines)
    assert all(json.loads(a[ARGS]) == [SANITIZER_FAILED] for a in captured.log_attributes())
    assert SENTINEL not in (tmp_path / "clues.log").read_text() + repr(captured.log_attributes())
    assert len([r for r in caplog.records if f"clues: {Place.ARGS_SANITIZER.value} failed" in r.getMessage()]) == 1
    assert CluesInstrumentor.error_counts()[f"{Place.ARGS_SANITIZER.value}:KeyError"] == 6  # enqueue + dequeue, 3 jobs


def test_redact_kwargs_from_the_environment_replaces_the_default_list(redis_conn, captured, tmp_path, monkeypatch):
    monkeypatch.setenv("OTEL_PYTHON_CLUES_REDACT_KWARGS", "ssn,user")
    lines = run_jobs(redis_conn, captured, tmp_path / "clues.log")
    for line in lines:
        assert line["metadata"]["kwargs"] == {"password": SENTINEL, "ssn": REDACTED, "user": REDACTED}


def test_redaction_switched_off_by_keyword(redis_conn, captured, tmp_path):
    lines = run_jobs(redis_conn, captured, tmp_path / "clues.log", redact_kwargs=[])
    assert all(line["metadata"]["kwargs"]["password"] == SENTINEL for line in lines)
