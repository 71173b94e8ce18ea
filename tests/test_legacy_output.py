"""The seed's output: JSON lines through publishers, marshaller, preprocessor and runtime metadata."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from rq import Queue, SimpleWorker, Worker

from opentelemetry_instrumentation_clues import CluesInstrumentor, LegacyJsonLineExporter, LogPublisher, TcpPublisher
from opentelemetry_instrumentation_clues.legacy.publishers import CompositePublisher, StandardOutPublisher, UdpPublisher
from opentelemetry_instrumentation_clues.legacy.wiring import publisher_from_spec
from opentelemetry_instrumentation_clues.runtime.safety import Place
from tests import jobs
from tests.test_marshaller import SEED_EVENT

SEED_EXAMPLE = SEED_EVENT  # the seed README's example event
SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]


class ListPublisher:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def publish(self, line: str) -> None:
        self.lines.append(line)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_seed_example_through_the_exporter_is_the_seed_line():
    publisher = ListPublisher()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(LegacyJsonLineExporter(publisher)))
    when = datetime(2013, 6, 4, 20, 59, 58, tzinfo=timezone.utc)
    provider.get_logger("t").emit(
        timestamp=int(when.timestamp() * 1e9),
        attributes={
            "clues.event_type": "dequeued",
            "messaging.destination.name": "test_queue",
            "clues.event_hash": "0695f49c5e70fc18da91961113e1769a",
            "host.name": "Lances-MacBook-Air.local",
            "process.pid": 30731,
            "rq.job.func_name": "TestWorker",
            "rq.job.args": "[1,2]",
            "rq.job.kwargs": "{}",
        },
    )
    provider.get_logger("t").emit(body="not a clues event", attributes={"other": 1})
    (line,) = publisher.lines
    assert "\n" not in line
    assert json.loads(line) == SEED_EXAMPLE
    assert list(json.loads(line)) == list(SEED_EXAMPLE)
    assert list(json.loads(line)["metadata"]) == ["event_hash", "hostname", "process"]


def run_with_clues(redis_conn, enqueue, worker_class=SimpleWorker, **instrument_kwargs):
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(**instrument_kwargs)
    try:
        queue = Queue("legacy", connection=redis_conn)
        enqueued = enqueue(queue)
        worker_class([queue], connection=redis_conn).work(burst=True)
    finally:
        instrumentor.uninstrument()  # detaching the legacy output flushes it
    return enqueued


def test_seed_style_one_liner_writes_the_lifecycle_to_a_log_file(redis_conn, tmp_path):
    path = tmp_path / "rq-clues.log"
    job = run_with_clues(
        redis_conn, lambda q: q.enqueue(jobs.add, 1, 2, extra="kw"), event_publisher=LogPublisher(path)
    )
    lines = read_lines(path)
    assert [line["event_type"] for line in lines] == SUCCESS
    assert all(list(line) == list(SEED_EXAMPLE) for line in lines)
    assert {line["metadata"]["event_hash"] for line in lines} == {lines[0]["metadata"]["event_hash"]}
    assert all(line["queue"] == "legacy" and line["worker_class"] == "tests.jobs.add" for line in lines)
    assert all(line["args"] == [1, 2] and line["metadata"]["kwargs"] == {"extra": "kw"} for line in lines)
    assert all(line["metadata"]["job_id"] == job.id for line in lines)
    assert all(line["timestamp"].endswith("Z") and len(line["timestamp"]) == 20 for line in lines)
    by_type = {line["event_type"]: line["metadata"] for line in lines}
    assert by_type["dequeued"]["time_in_queue"] >= 0
    assert by_type["perform_finished"]["time_to_perform"] >= 0
    assert path.stat().st_mode & 0o777 == 0o640


def test_failed_line_has_exception_message_and_backtrace(redis_conn, tmp_path):
    path = tmp_path / "rq-clues.log"
    run_with_clues(redis_conn, lambda q: q.enqueue(jobs.fail, "bad input"), event_publisher=LogPublisher(path))
    failed = read_lines(path)[-1]
    assert failed["event_type"] == "failed"
    assert failed["metadata"]["exception"] == "ValueError"
    assert failed["metadata"]["message"] == "bad input"
    assert isinstance(failed["metadata"]["backtrace"], list)
    assert any("raise ValueError(message)" in frame for frame in failed["metadata"]["backtrace"])
    assert failed["metadata"]["time_to_perform"] >= 0


def test_item_preprocessor_metadata_shows_on_every_later_event(redis_conn, tmp_path, captured):
    path = tmp_path / "rq-clues.log"
    run_with_clues(
        redis_conn,
        lambda q: q.enqueue(jobs.add, 7, 8),
        event_publisher=LogPublisher(path),
        item_preprocessor=jobs.tag_customer,
        tracer_provider=captured.tracer_provider,
        logger_provider=captured.logger_provider,
    )
    expected = {"customer_id": 42, "queue_seen": "legacy", "first_arg": 7}
    lines = read_lines(path)
    assert [line["event_type"] for line in lines] == SUCCESS
    assert all({k: line["metadata"][k] for k in expected} == expected for line in lines)
    for attributes in captured.log_attributes():
        assert attributes["clues.metadata.customer_id"] == 42
        assert attributes["clues.metadata.queue_seen"] == "legacy"
    for span in captured.finished_spans():
        assert span.attributes["clues.metadata.customer_id"] == 42


def test_runtime_metadata_appears_on_perform_finished_and_failed(redis_conn, tmp_path):
    path = tmp_path / "rq-clues.log"
    run_with_clues(
        redis_conn,
        lambda q: [q.enqueue(jobs.record_rows, 12), q.enqueue(jobs.fail_after_noting, "quota")],
        event_publisher=LogPublisher(path),
    )
    terminal = {line["event_type"]: line["metadata"] for line in read_lines(path) if line["event_type"] != "dequeued"}
    assert terminal["perform_finished"]["rows"] == 12
    assert terminal["failed"]["reason"] == "quota"
    assert "rows" not in terminal["perform_started"] and "reason" not in terminal["perform_started"]


def test_custom_marshaller_replaces_the_format(redis_conn):
    publisher = ListPublisher()

    def pipes(event_type, timestamp, queue, metadata, worker_class, args):
        return f"{event_type}|{queue}|{worker_class}|{args}"

    run_with_clues(redis_conn, lambda q: q.enqueue(jobs.add, 1, 1), event_publisher=publisher, event_marshaller=pipes)
    assert publisher.lines == [f"{t}|legacy|tests.jobs.add|[1, 1]" for t in SUCCESS]


def test_publisher_spec_builds_each_kind(tmp_path):
    composite = publisher_from_spec(f"stdout, file://{tmp_path}/a.log, tcp://127.0.0.1:9, udp://127.0.0.1:9")
    assert isinstance(composite, CompositePublisher)
    kinds = [type(p) for p in composite.publishers]
    assert kinds == [StandardOutPublisher, LogPublisher, TcpPublisher, UdpPublisher]
    assert isinstance(publisher_from_spec(str(tmp_path / "b.log")), LogPublisher)
    with pytest.raises(ValueError, match="unknown clues publisher 'ftp://x'"):
        publisher_from_spec("ftp://x")


class _Raising:
    def publish(self, line: str) -> None:
        raise OSError("disk on fire")


def test_raising_publisher_and_marshaller_never_touch_the_job_and_log_once(redis_conn, caplog):
    def broken_marshaller(*args):
        raise ValueError("cannot marshal")

    with caplog.at_level(logging.ERROR, logger="opentelemetry_instrumentation_clues"):
        done = run_with_clues(
            redis_conn, lambda q: [q.enqueue(jobs.add, i, i) for i in range(3)], event_publisher=_Raising()
        )
        done += run_with_clues(
            redis_conn,
            lambda q: [q.enqueue(jobs.add, i, i) for i in range(3)],
            event_publisher=ListPublisher(),
            event_marshaller=broken_marshaller,
        )
    assert [j.get_status(refresh=True) for j in done] == ["finished"] * 6
    counts = CluesInstrumentor.error_counts()
    assert counts == {f"{Place.LEGACY_PUBLISHER.value}:OSError": 12, f"{Place.LEGACY_MARSHALLER.value}:ValueError": 12}
    assert len([r for r in caplog.records if r.name == "opentelemetry_instrumentation_clues"]) == 2


def test_raising_or_hanging_preprocessor_never_blocks_or_fails_the_enqueue(redis_conn, monkeypatch):
    release = threading.Event()

    def hangs(queue, item):
        release.wait(30)

    def raises(queue, item):
        raise KeyError("customer")

    monkeypatch.setenv("OTEL_PYTHON_CLUES_PREPROCESSOR_TIMEOUT_MILLIS", "100")
    try:
        for preprocessor in (hangs, raises):
            publisher = ListPublisher()
            started = time.monotonic()
            (job,) = run_with_clues(
                redis_conn,
                lambda q: [q.enqueue(jobs.add, 2, 2)],
                event_publisher=publisher,
                item_preprocessor=preprocessor,
            )
            assert time.monotonic() - started < 10  # bounded by the 100 ms limit, not the 30 s hang
            assert job.get_status(refresh=True) == "finished"
            assert [json.loads(line)["event_type"] for line in publisher.lines] == SUCCESS
    finally:
        release.set()
    counts = CluesInstrumentor.error_counts()
    assert counts == {
        f"{Place.LEGACY_PREPROCESSOR.value}:CallTimedOut": 1,
        f"{Place.LEGACY_PREPROCESSOR.value}:KeyError": 1,
    }


class _Hanging:
    def __init__(self) -> None:
        self.release = threading.Event()

    def publish(self, line: str) -> None:
        self.release.wait(60)


def test_hanging_publisher_does_not_hold_a_forking_worker(redis_conn, monkeypatch):
    # The horse's final flush gives up after flush_timeout_millis; jobs finish regardless.
    publisher = _Hanging()
    monkeypatch.setenv("OTEL_PYTHON_CLUES_FLUSH_TIMEOUT_MILLIS", "200")
    started = time.monotonic()
    try:
        done = run_with_clues(
            redis_conn, lambda q: [q.enqueue(jobs.add, i, 1) for i in range(3)], Worker, event_publisher=publisher
        )
    finally:
        publisher.release.set()
    assert [j.get_status(refresh=True) for j in done] == ["finished"] * 3
    assert time.monotonic() - started < 30  # 3 jobs, not 3 x 60 s


def test_tcp_peer_down_then_up(redis_conn):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    publisher = TcpPublisher("127.0.0.1", port, max_buffer=5, backoff_initial=0.05, backoff_max=0.2)
    queue = Queue("legacy", connection=redis_conn)
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(event_publisher=publisher)
    try:
        started = time.monotonic()
        down = [queue.enqueue(jobs.add, i, 0) for i in range(20)]
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
        assert time.monotonic() - started < 20  # 80 events to a dead peer: nothing waits on it
        assert [j.get_status(refresh=True) for j in down] == ["finished"] * 20
        instrumentor.force_flush()
        assert publisher.stats()["dropped"] > 0

        received: list[bytes] = []
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            server.settimeout(30)

            def accept() -> None:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(30)
                    while b"[100,1]" not in b"".join(received) or not b"".join(received).endswith(b"\n"):
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        received.append(chunk)

            reader = threading.Thread(target=accept)
            reader.start()
            deadline = time.monotonic() + 30
            while publisher.stats()["buffered"] or not publisher.stats()["connected"]:
                assert time.monotonic() < deadline, publisher.stats()
                time.sleep(0.05)  # the sender reconnects (with backoff) and drains what it kept
            after = queue.enqueue(jobs.add, 100, 1)
            SimpleWorker([queue], connection=redis_conn).work(burst=True)
            instrumentor.force_flush()  # the batch processor hands the lines over now
            reader.join(30)
    finally:
        instrumentor.uninstrument()
    assert after.get_status(refresh=True) == "finished"
    lines = [json.loads(line) for line in b"".join(received).decode().splitlines()]
    assert any(line["args"] == [100, 1] for line in lines)
