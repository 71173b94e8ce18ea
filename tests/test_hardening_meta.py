"""Foreign or corrupt clues data in job.meta never breaks a worker: one warning, a fresh event_hash."""

from __future__ import annotations

import json
import logging
import pickle
from typing import Any

import pytest
from rq import Queue, SimpleWorker, Worker

from opentelemetry_instrumentation_clues.instrumentation import job_context as jc
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from tests import jobs
from tests.hardening_jobs import clues_with_log_file

VALID_HASH = "0123456789abcdef0123456789abcdef"
WHERE = Place.JOB_META.value
SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]

# The raw meta hash field written into Redis, as rq's default (pickle) serializer stores it.
CORRUPT_META: dict[str, bytes] = {
    "clues is a string": pickle.dumps({"clues": "not a dict"}),
    "clues is an int": pickle.dumps({"clues": 42}),
    "clues is a list": pickle.dumps({"clues": [VALID_HASH]}),
    "clues is empty": pickle.dumps({"clues": {}}),
    "event_hash missing": pickle.dumps({"clues": {"v": 1, "attempt": 0}}),
    "event_hash not hex": pickle.dumps({"clues": {"v": 1, "event_hash": "z" * 32}}),
    "event_hash with a newline": pickle.dumps({"clues": {"event_hash": VALID_HASH + "\n"}}),
    "older format": pickle.dumps({"clues": {"hash": VALID_HASH, "meta": {"a": 1}}}),
    "version 0": pickle.dumps({"clues": {"v": 0, "event_hash": VALID_HASH}}),
    "version a string": pickle.dumps({"clues": {"v": "2", "event_hash": VALID_HASH}}),
    "carrier not a dict": pickle.dumps({"clues": {"event_hash": VALID_HASH, "carrier": "traceparent"}}),
    "carrier of ints": pickle.dumps({"clues": {"event_hash": VALID_HASH, "carrier": {"traceparent": 1}}}),
    "metadata a list": pickle.dumps({"clues": {"event_hash": VALID_HASH, "metadata": [1, 2]}}),
    "attempt negative": pickle.dumps({"clues": {"event_hash": VALID_HASH, "attempt": -1}}),
    "attempt a string": pickle.dumps({"clues": {"event_hash": VALID_HASH, "attempt": "1"}}),
    "meta is a list": pickle.dumps(["not", "a", "dict"]),
    "meta is a string": pickle.dumps("clues"),
    "meta unreadable": b"\x80\x04 this is not a pickle",
}


def clues_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "opentelemetry_instrumentation_clues" and WHERE in r.getMessage()]


def corrupt(redis_conn: Any, job: Any, raw_meta: bytes) -> None:
    redis_conn.hset(job.key, "meta", raw_meta)


# -- job_context.read, unit level ---------------------------------------------------------------


class _Job:
    def __init__(self, meta: Any) -> None:
        self.meta = meta


@pytest.mark.parametrize("name", [n for n in CORRUPT_META if n != "meta unreadable"])
def test_read_ignores_foreign_data_and_reports_it_once(name, caplog):
    meta = pickle.loads(CORRUPT_META[name])
    for _ in range(3):
        assert jc.read(_Job(meta)) is None
    assert len(clues_warnings(caplog)) == 1
    assert errors.counts() == {f"{WHERE}:ForeignCluesData": 3}


def test_read_survives_a_meta_that_raises_when_read(caplog):
    class Hostile(dict):
        def __contains__(self, key: object) -> bool:
            raise RuntimeError("hostile meta")

    assert jc.read(_Job(Hostile())) is None
    assert len(clues_warnings(caplog)) == 1


def test_read_accepts_data_from_before_the_version_field_and_from_newer_versions(caplog):
    old = jc.read(_Job({"clues": {"event_hash": VALID_HASH.upper(), "metadata": {1: "one"}}}))
    assert old is not None and old.event_hash == VALID_HASH and old.metadata == {"1": "one"}
    newer = jc.read(_Job({"clues": {"v": 7, "event_hash": VALID_HASH, "attempt": 2, "later": {"x": 1}}}))
    assert newer is not None and newer.attempt == 2
    assert jc.read(_Job({})) is None and jc.read(_Job(None)) is None
    assert clues_warnings(caplog) == [] and errors.counts() == {}


def test_has_metadata_is_false_only_for_data_that_surely_holds_none():
    # The end of an attempt skips parsing job.meta again when this says False.
    assert not jc.has_metadata(_Job({"clues": {"event_hash": VALID_HASH, "metadata": {}}}))
    assert not jc.has_metadata(_Job({"clues": {"event_hash": VALID_HASH, "metadata": None}}))
    assert jc.has_metadata(_Job({"clues": {"event_hash": VALID_HASH, "metadata": {"rows": 3}}}))
    # Anything else is left to read(), which parses and checks it (and reports foreign data).
    for meta in ({"clues": {"event_hash": VALID_HASH}}, {"clues": "not a dict"}, None, ["a", "list"]):
        assert jc.has_metadata(_Job(meta))

    class Hostile(dict):
        def get(self, key: object, default: object = None) -> object:
            raise RuntimeError("user code must not run")

    assert jc.has_metadata(_Job(Hostile()))


# -- through real workers -----------------------------------------------------------------------


def run_corrupted(redis_conn, captured, tmp_path, raw_meta: bytes, worker_class: type) -> tuple[Any, list[dict]]:
    path = tmp_path / "clues.log"
    with clues_with_log_file(captured, path):
        queue = Queue("foreign", connection=redis_conn)
        job = queue.enqueue(jobs.add, 2, 3)
        corrupt(redis_conn, job, raw_meta)
        worker_class([queue], connection=redis_conn).work(burst=True)
    return job, [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("worker_class", [SimpleWorker, Worker], ids=["SimpleWorker", "Worker"])
@pytest.mark.parametrize("name", list(CORRUPT_META))
def test_a_job_with_corrupt_clues_meta_runs_and_publishes_with_a_fresh_event_hash(
    redis_conn, captured, tmp_path, caplog, name, worker_class
):
    job, lines = run_corrupted(redis_conn, captured, tmp_path, CORRUPT_META[name], worker_class)

    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == 5
    # one file, two processes under the forking Worker: the horse's lines may come first
    by_type = {line["event_type"]: line["metadata"]["event_hash"] for line in lines}
    assert sorted(line["event_type"] for line in lines) == sorted(SUCCESS) and len(by_type) == 4
    enqueued_hash = by_type.pop("enqueued")
    worker_hashes = set(by_type.values())
    assert len(worker_hashes) == 1
    (fresh,) = worker_hashes
    assert fresh != enqueued_hash and fresh != VALID_HASH
    assert len(fresh) == 32 and int(fresh, 16) >= 0
    # the dequeue happens in this process: its log record and span event are in memory
    dequeued = [a for a in captured.log_attributes() if a["clues.event_type"] == "dequeued"]
    assert [a["clues.event_hash"] for a in dequeued] == [fresh]
    if worker_class is SimpleWorker:  # a forked horse ends (and exports) the process span itself
        assert any(e.name == "dequeued" for s in captured.finished_spans() for e in s.events)
    # logged once (a forked work horse inherits the "already reported"), counted. An unreadable
    # meta reaches clues on some rq versions only (rq 2.6 sets it aside where clues never looks):
    # there it may pass unremarked, but it is never reported more than once.
    if name == "meta unreadable":
        assert len(clues_warnings(caplog)) <= 1
    else:
        assert len(clues_warnings(caplog)) == 1
        assert errors.counts().get(f"{WHERE}:ForeignCluesData", 0) >= 1
