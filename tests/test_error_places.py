"""error_counts() keys come from a closed set: ``"{Place.value}:{ExceptionType}"``."""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path

import pytest
from rq import Queue, SimpleWorker

import opentelemetry_instrumentation_clues
from opentelemetry_instrumentation_clues import CluesInstrumentor
from opentelemetry_instrumentation_clues.instrumentation import worker_hooks
from opentelemetry_instrumentation_clues.runtime.safety import ErrorReport, Place, call_guarded, errors, guarded
from opentelemetry_instrumentation_clues.runtime.threads import TimeLimitedCaller
from tests import jobs

PACKAGE = Path(opentelemetry_instrumentation_clues.__file__).parent


def test_places_are_a_small_set_of_short_stable_names():
    values = [place.value for place in Place]
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)?", value) for value in values), values
    assert 20 <= len(values) <= 40


@pytest.mark.parametrize(
    "use",
    [
        lambda where: guarded(where),
        lambda where: call_guarded(where, int, default=0),
        lambda where: errors.record(where, ValueError("x")),
        lambda where: TimeLimitedCaller(where, 1.0),
    ],
    ids=["guarded", "call_guarded", "record", "TimeLimitedCaller"],
)
@pytest.mark.parametrize("where", ["failed", "metric", None])
def test_a_place_that_is_not_a_place_is_refused(use, where):
    with pytest.raises(TypeError, match="Place"):
        use(where)  # "metric" is Place.METRIC's value, and still not a Place
    assert errors.counts() == {}


def _is_place(node: ast.expr) -> bool:
    """``Place.X``, or the ``place`` a helper was given (itself checked to be a Place)."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Place":
        return True
    return (isinstance(node, ast.Name) and node.id == "place") or (
        isinstance(node, ast.Attribute) and node.attr == "place"
    )


def test_every_call_site_in_the_package_names_a_place_member():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            receiver = func.value if isinstance(func, ast.Attribute) else None
            if name in {"guarded", "call_guarded", "TimeLimitedCaller"} or (
                name == "record" and isinstance(receiver, ast.Name) and receiver.id == "errors"
            ):
                calls.append((f"{path.relative_to(PACKAGE)}:{node.lineno}", _is_place(node.args[0])))
    assert len(calls) > 60  # the search found the call sites
    assert [site for site, ok in calls if not ok] == []


def test_two_paths_once_both_called_failed_count_under_their_own_places(
    redis_conn, captured, instrumented, monkeypatch, caplog
):
    def broken(*args, **kwargs):
        raise RuntimeError("clues bug")

    monkeypatch.setattr(worker_hooks, "current_failure", broken)  # read by both failure paths
    queue = Queue("places", connection=redis_conn)
    failing = queue.enqueue(jobs.fail)
    with caplog.at_level(logging.ERROR, logger="opentelemetry_instrumentation_clues"):
        SimpleWorker([queue], connection=redis_conn).work(burst=True)  # handle_job_failure
        Queue("places-sync", connection=redis_conn, is_async=False).enqueue(jobs.fail)  # run_job
    assert failing.get_status(refresh=True) == "failed"
    assert CluesInstrumentor.error_counts() == {
        f"{Place.WORKER_FAILURE.value}:RuntimeError": 1,
        f"{Place.SYNC_FAILURE.value}:RuntimeError": 1,
    }
    logged = [r.getMessage() for r in caplog.records if r.name == "opentelemetry_instrumentation_clues"]
    assert len(logged) == 2
    assert any(m.startswith(f"clues: {Place.WORKER_FAILURE.value} failed") for m in logged)
    assert any(m.startswith(f"clues: {Place.SYNC_FAILURE.value} failed") for m in logged)


def test_a_horse_hands_its_errors_over_as_strings_and_the_worker_logs_each_kind_once(caplog):
    horse, worker = ErrorReport(logging.getLogger("clues-test-horse")), ErrorReport(logging.getLogger("clues-test"))
    horse.hold_back()
    for _ in range(3):
        horse.record(Place.LEGACY_PUBLISHER, OSError("disk full"), "LogPublisher(/a)")
    horse.record(Place.LEGACY_PUBLISHER, OSError("disk full"), "LogPublisher(/b)")
    horse.record(Place.METRIC, ValueError("bad"))
    held = json.loads(json.dumps(horse.take_held()))  # through the horse's pipe
    with caplog.at_level(logging.ERROR, logger="clues-test"):
        worker.record_from_horse(held)
        worker.record_from_horse(held)  # the next horse: counted, not logged again
    assert worker.counts() == {f"{Place.LEGACY_PUBLISHER.value}:OSError": 8, f"{Place.METRIC.value}:ValueError": 2}
    messages = sorted(r.getMessage() for r in caplog.records if r.name == "clues-test")
    assert len(messages) == 3 and all(m.endswith("(in a work horse)") for m in messages)
    assert "clues: legacy.publisher [LogPublisher(/a)] failed (OSError: disk full)" in messages[0]
    assert "clues: legacy.publisher [LogPublisher(/b)] failed (OSError: disk full)" in messages[1]
    assert messages[2].startswith("clues: metric failed (ValueError: bad)")
