"""A job's exception is user data too: its message and stacktrace are bounded like its arguments.

A job may raise with a message of any size (a 10 MB response body, say); the failed event
still goes out, with ``exception.message`` cut at ``max_value_length`` and
``exception.stacktrace`` at ``max_stacktrace_length`` — keeping both ends of the traceback,
where the outermost frames and the exception line are — each with a marker where it was cut.
"""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from rq import Queue, SimpleWorker

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.telemetry.attributes import EXCEPTION_MESSAGE, EXCEPTION_STACKTRACE
from opentelemetry_instrumentation_clues.values.converter import MAX_OVERSHOOT, cut_middle
from tests.hardening_jobs import clues_with_log_file
from tests.processes import enqueue_cmd, env_with, instrumented, rq_worker_cmd, run

HUGE = 10_000_000
MESSAGE_LIMIT = 500
STACKTRACE_LIMIT = 3000


@given(st.text(max_size=400), st.integers(min_value=0, max_value=300))
def test_cut_middle_keeps_both_ends_and_says_how_much_went(text, limit):
    cut = cut_middle(text, limit)
    if len(text) <= limit:
        assert cut == text
        return
    head, rest = cut.split("…[truncated ", 1)
    dropped, tail = rest.split(" chars]…", 1)
    assert text.startswith(head) and text.endswith(tail)
    assert len(head) + len(tail) == limit and int(dropped) == len(text) - limit
    assert len(cut) <= limit + MAX_OVERSHOOT


def test_the_limits_come_from_keywords_and_the_environment(monkeypatch):
    assert CluesConfig.from_kwargs().max_stacktrace_length == 16384
    assert CluesConfig.from_kwargs(max_stacktrace_length=100).max_stacktrace_length == 100
    monkeypatch.setenv("OTEL_PYTHON_CLUES_MAX_STACKTRACE_LENGTH", "321")
    assert CluesConfig.from_kwargs().max_stacktrace_length == 321


def assert_bounded_failure(message: str, stacktrace: str) -> None:
    assert len(message) <= MESSAGE_LIMIT + MAX_OVERSHOOT
    assert message.startswith("xxxx") and "…[truncated " in message
    assert len(stacktrace) <= STACKTRACE_LIMIT + MAX_OVERSHOOT
    assert stacktrace.startswith("Traceback (most recent call last)")
    assert "…[truncated " in stacktrace
    assert stacktrace.rstrip().endswith("THE END")  # the exception line's tail survives


def test_a_huge_exception_message_is_bounded_on_every_output(redis_conn, captured, tmp_path):
    path = tmp_path / "clues.log"
    with clues_with_log_file(captured, path, max_value_length=MESSAGE_LIMIT, max_stacktrace_length=STACKTRACE_LIMIT):
        queue = Queue("huge-failure", connection=redis_conn)
        job = queue.enqueue("tests.hardening_jobs.raise_huge", HUGE)
        SimpleWorker([queue], connection=redis_conn).work(burst=True)

    assert job.get_status(refresh=True) == "failed"
    failed = [a for a in captured.log_attributes() if a["clues.event_type"] == "failed"]
    assert len(failed) == 1
    assert_bounded_failure(failed[0][EXCEPTION_MESSAGE], failed[0][EXCEPTION_STACKTRACE])
    events = [e for s in captured.finished_spans() for e in s.events if e.name == "failed"]
    assert len(events) == 1
    assert_bounded_failure(events[0].attributes[EXCEPTION_MESSAGE], events[0].attributes[EXCEPTION_STACKTRACE])

    line = next(line for line in path.read_text().splitlines() if '"event_type":"failed"' in line)
    metadata = json.loads(line)["metadata"]
    assert_bounded_failure(metadata["message"], "\n".join(metadata["backtrace"]))
    assert len(line) < MESSAGE_LIMIT + STACKTRACE_LIMIT + 4000


def test_a_forking_worker_bounds_it_from_environment_settings(redis_url, tmp_path):
    log = tmp_path / "clues.log"
    env = env_with(
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_PYTHON_CLUES_PUBLISHER": f"file://{log}",
            "OTEL_PYTHON_CLUES_MAX_VALUE_LENGTH": str(MESSAGE_LIMIT),
            "OTEL_PYTHON_CLUES_MAX_STACKTRACE_LENGTH": str(STACKTRACE_LIMIT),
        }
    )
    run(instrumented(*enqueue_cmd(redis_url, "huge-forked", "tests.hardening_jobs.raise_huge", 1, str(HUGE))), env)
    run(instrumented(*rq_worker_cmd(redis_url, "huge-forked")), env)

    # The horse and its parent each write their own events: the file is not in event order.
    events = {(event := json.loads(line))["event_type"]: event for line in log.read_text().splitlines()}
    assert sorted(events) == ["dequeued", "enqueued", "failed", "perform_started"]
    failed = events["failed"]["metadata"]
    assert failed["exception"] == "ValueError"
    assert_bounded_failure(failed["message"], "\n".join(failed["backtrace"]))
    assert len(log.read_text()) < 4 * (MESSAGE_LIMIT + STACKTRACE_LIMIT) + 4000
