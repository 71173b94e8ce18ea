from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from opentelemetry_instrumentation_clues.legacy.marshaller import json_marshaller
from opentelemetry_instrumentation_clues.legacy.publishers import (
    CompositePublisher,
    EventPublisher,
    LogPublisher,
    StandardOutPublisher,
    TcpPublisher,
    UdpPublisher,
)
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors

WHEN = dt.datetime(2013, 6, 4, 20, 59, 58, tzinfo=dt.timezone.utc)
LOGGER = "opentelemetry_instrumentation_clues"


@pytest.fixture(autouse=True)
def _fresh_error_report() -> Iterator[None]:
    errors.reset()  # "logged once" is per process; each test starts from zero
    yield
    errors.reset()


def event(n: int, *, tag: str = "t", pad: int = 0, **metadata: Any) -> str:
    meta = {"event_hash": f"{n:032x}", "hostname": "host", "process": os.getpid(), "n": n, "tag": tag}
    meta.update(metadata)
    args = [n, "multi\nline ✓ 漢字", "x" * pad]
    return json_marshaller("enqueued", WHEN, "q", meta, "jobs.work", args)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Bounded poll: synchronise on an observable condition, never on a fixed sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def read_events(*paths: Path) -> list[dict[str, Any]]:
    events = []
    for path in paths:
        data = path.read_bytes()
        assert data == b"" or data.endswith(b"\n")
        events += [json.loads(line) for line in data.decode("utf-8").split("\n")[:-1]]
    return events


def error_count(place: Place) -> int:
    return sum(n for key, n in errors.counts().items() if key.startswith(f"{place.value}:"))


class ListPublisher:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.flushed = self.closed = 0

    def publish(self, line: str) -> None:
        self.lines.append(line)

    def flush(self, timeout: float | None = None) -> bool:
        self.flushed += 1
        return True

    def close(self) -> None:
        self.closed += 1


class BrokenPublisher:
    def publish(self, line: str) -> None:
        raise OSError("disk on fire")


# -- protocol and stdout ----------------------------------------------------------------------


def test_any_object_with_publish_is_a_publisher() -> None:
    assert isinstance(ListPublisher(), EventPublisher)
    for cls in (StandardOutPublisher, LogPublisher, CompositePublisher, TcpPublisher, UdpPublisher):
        assert callable(cls.publish), cls


def test_stdout_publisher_writes_one_line_per_event_to_current_stdout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publisher = StandardOutPublisher()
    replaced = io.StringIO()
    monkeypatch.setattr(sys, "stdout", replaced)  # swapped after construction: looked up per event
    publisher.publish(event(1))
    publisher.publish(event(2) + "\n")  # a seed-style marshaller's own newline is not doubled
    lines = replaced.getvalue().split("\n")
    assert lines[2:] == [""]
    assert [json.loads(line)["metadata"]["n"] for line in lines[:2]] == [1, 2]


def test_stdout_publisher_swallows_a_broken_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdout", closed)
    StandardOutPublisher().publish(event(1))  # must not raise
    assert error_count(Place.LEGACY_PUBLISHER) == 1


# -- LogPublisher ----------------------------------------------------------------------------


def test_log_publisher_appends_one_line_per_event(tmp_path: Path) -> None:
    path = tmp_path / "clues.log"
    path.write_text("existing line\n")
    publisher = LogPublisher(path)
    for n in range(3):
        publisher.publish(event(n))
    publisher.close()
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[0] == "existing line" and lines[-1] == ""
    assert [json.loads(line)["metadata"]["n"] for line in lines[1:-1]] == [0, 1, 2]


@pytest.mark.parametrize(("kwargs", "expected"), [({}, 0o640), ({"mode": 0o600}, 0o600)])
def test_log_publisher_creates_file_with_restrictive_mode(
    tmp_path: Path, kwargs: dict[str, int], expected: int
) -> None:
    path = tmp_path / "clues.log"
    old_umask = os.umask(0o022)
    try:
        LogPublisher(path, **kwargs).publish(event(1))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == expected


@pytest.mark.parametrize("opened_before_fork", [True, False], ids=["shared-fd", "own-fd"])
def test_log_publisher_forked_processes_keep_every_line_whole(tmp_path: Path, opened_before_fork: bool) -> None:
    path = tmp_path / "clues.log"
    publisher = LogPublisher(path)
    # shared-fd: like work horses forked from one worker; own-fd: like separate workers.
    (publisher.publish if opened_before_fork else LogPublisher(path).publish)(event(-1, tag="parent"))
    per_child, children = 500, []
    for child in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                for n in range(per_child):
                    # > PIPE_BUF and > a page, so torn writes would show
                    publisher.publish(event(n, tag=f"child{child}", pad=5000 + n))
                code = 0
            finally:
                os._exit(code)  # like an RQ work horse: no atexit, no buffers flushed
        children.append(pid)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    events = read_events(path)  # every line parses: none torn or interleaved
    seen = sorted((e["metadata"]["tag"], e["metadata"]["n"]) for e in events)
    expected = sorted([("parent", -1)] + [(f"child{c}", n) for c in range(4) for n in range(per_child)])
    assert seen == expected
    assert error_count(Place.LEGACY_PUBLISHER) == 0


def test_log_publisher_is_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "clues.log"
    publisher = LogPublisher(path, check_interval=0)

    def work(t: int) -> None:
        for n in range(300):
            publisher.publish(event(n, tag=f"thread{t}", pad=3000))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen = sorted((e["metadata"]["tag"], e["metadata"]["n"]) for e in read_events(path))
    assert seen == sorted((f"thread{t}", n) for t in range(8) for n in range(300))


@pytest.mark.parametrize("create", [False, True], ids=["rename", "rename-and-create"])
def test_log_publisher_follows_rotation_without_loss_or_duplicates(tmp_path: Path, create: bool) -> None:
    path, rotated = tmp_path / "clues.log", tmp_path / "clues.log.1"
    publisher = LogPublisher(path, check_interval=0.01)
    stop = threading.Event()
    written = 0

    def writer() -> None:
        nonlocal written
        while not stop.is_set():
            publisher.publish(event(written))
            written += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert wait_until(lambda: path.exists() and path.stat().st_size > 10_000)
        if create:  # logrotate's "create": the path names a new empty file at once, never missing
            fresh = tmp_path / "fresh"
            fresh.touch()
            os.link(path, rotated)
            fresh.replace(path)
        else:
            path.rename(rotated)
        assert wait_until(lambda: path.exists() and path.stat().st_size > 10_000)
    finally:
        stop.set()
        thread.join()
    old, new = read_events(rotated), read_events(path)
    assert old and new
    assert sorted(e["metadata"]["n"] for e in old + new) == list(range(written))
    # the new file continues where the old one stopped
    assert max(e["metadata"]["n"] for e in old) < min(e["metadata"]["n"] for e in new) + 100


def test_log_publisher_recreates_a_deleted_file(tmp_path: Path) -> None:
    path = tmp_path / "clues.log"
    publisher = LogPublisher(path, check_interval=0)
    publisher.publish(event(1))
    path.unlink()
    publisher.publish(event(2))
    assert [e["metadata"]["n"] for e in read_events(path)] == [2]


def test_log_publisher_errors_are_logged_once_and_open_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "missing-dir" / "clues.log"
    publisher = LogPublisher(path)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for n in range(20):
            publisher.publish(event(n))  # must not raise
    assert len([r for r in caplog.records if "LogPublisher" in r.getMessage()]) == 1
    assert error_count(Place.LEGACY_PUBLISHER) == 20
    path.parent.mkdir()
    publisher.publish(event(99))
    assert [e["metadata"]["n"] for e in read_events(path)] == [99]


# -- CompositePublisher -----------------------------------------------------------------------


def test_composite_reaches_every_child_when_one_raises_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, last, broken = ListPublisher(), ListPublisher(), BrokenPublisher()
    composite = CompositePublisher(first, broken).add(last)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for n in range(50):
            composite.publish(event(n))
    assert len(first.lines) == len(last.lines) == 50
    assert first.lines == last.lines
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert "BrokenPublisher" in records[0].getMessage() and "disk on fire" in records[0].getMessage()
    assert error_count(Place.LEGACY_PUBLISHER) == 50


def test_composite_logs_each_broken_child_separately(caplog: pytest.LogCaptureFixture) -> None:
    composite = CompositePublisher(BrokenPublisher(), BrokenPublisher())
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for n in range(5):
            composite.publish(event(n))
    assert len([r for r in caplog.records if r.name == LOGGER]) == 2


def test_composite_flushes_and_closes_children_that_can() -> None:
    child = ListPublisher()
    composite = CompositePublisher(BrokenPublisher(), child)  # BrokenPublisher has neither
    assert composite.flush(1.0) is True
    composite.close()
    assert (child.flushed, child.closed) == (1, 1)
    assert composite.publishers[1] is child


# -- TcpPublisher -----------------------------------------------------------------------------


class LineServer:
    """A real TCP peer on 127.0.0.1: bound at once (so the port is known), listening on demand.

    Bound but not listening, the port refuses connections: the peer is "down".
    """

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[bytes] = []
        self.connections: list[socket.socket] = []
        self._lock = threading.Lock()

    def listen(self, *, accept: bool = True) -> None:
        self.sock.listen(16)
        if accept:
            threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        pending = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            *complete, pending = (pending + chunk).split(b"\n")
            with self._lock:
                self.lines.extend(complete)

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(line) for line in self.lines]

    def count(self) -> int:
        with self._lock:
            return len(self.lines)

    def close(self) -> None:
        self.sock.close()
        with self._lock:
            for conn in self.connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the reader thread; close() alone would not
                conn.close()


@pytest.fixture
def server() -> Iterator[LineServer]:
    srv = LineServer()
    yield srv
    srv.close()


def tags(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["metadata"]["tag"], e["metadata"]["n"]) for e in events]


def test_tcp_sends_newline_delimited_lines_in_order(server: LineServer) -> None:
    server.listen()
    publisher = TcpPublisher("127.0.0.1", server.port)
    try:
        for n in range(1000):
            publisher.publish(event(n))
        assert publisher.flush(10) is True
        assert wait_until(lambda: server.count() == 1000)
        assert tags(server.events()) == [("t", n) for n in range(1000)]
        assert publisher.stats()["sent"] == 1000 and publisher.dropped == 0
    finally:
        publisher.close()


def test_tcp_peer_down_never_blocks_counts_drops_and_recovers(server: LineServer) -> None:
    publisher = TcpPublisher("127.0.0.1", server.port, max_buffer=100, backoff_initial=0.01, backoff_max=0.05)
    try:
        started = time.monotonic()
        for n in range(10_000):
            publisher.publish(event(n, tag="down"))
        elapsed = time.monotonic() - started
        assert elapsed < 5.0, f"publish blocked: 10k events took {elapsed:.2f}s"
        assert wait_until(lambda: publisher.stats()["peer_down"] is True)
        started = time.monotonic()
        assert publisher.flush(30) is False  # gives up at once: the peer is known down
        assert time.monotonic() - started < 5.0
        assert publisher.dropped == 10_000 - 100  # newest dropped, the first 100 kept
        assert server.count() == 0

        server.listen()  # the peer comes back: the buffered lines go out first
        assert wait_until(lambda: server.count() >= 100)
        for n in range(50):
            publisher.publish(event(n, tag="up"))
        assert publisher.flush(10) is True
        expected = [("down", n) for n in range(100)] + [("up", n) for n in range(50)]
        assert wait_until(lambda: server.count() >= len(expected))
        assert tags(server.events()) == expected
        assert publisher.dropped == 10_000 - 100
    finally:
        publisher.close()


def test_tcp_stuck_peer_never_blocks_the_caller(server: LineServer) -> None:
    server.listen(accept=False)  # connections complete in the backlog, nobody reads
    publisher = TcpPublisher("127.0.0.1", server.port, max_buffer=100, send_timeout=30)
    try:
        line = event(0, pad=20_000)
        started = time.monotonic()
        for _ in range(10_000):  # 200 MB: far beyond what the kernel buffers of a connection hold
            publisher.publish(line)
        assert time.monotonic() - started < 5.0
        started = time.monotonic()
        assert publisher.flush(0.5) is False  # bounded even though the peer is "up"
        assert time.monotonic() - started < 5.0
        stats = publisher.stats()
        assert stats["dropped"] > 0
        assert stats["sent"] + stats["dropped"] + stats["buffered"] == 10_000
    finally:
        publisher.close(timeout=0)


def test_tcp_reconnects_after_the_peer_drops_the_connection(server: LineServer) -> None:
    server.listen()
    publisher = TcpPublisher("127.0.0.1", server.port, backoff_initial=0.01, backoff_max=0.05)
    try:
        publisher.publish(event(0, tag="before"))
        assert wait_until(lambda: server.count() == 1)
        with server._lock:
            server.connections[0].shutdown(socket.SHUT_RDWR)  # peer restarts / idles us out
        n = 0
        # The first line after the drop may go into the dead connection before the FIN is
        # seen; keep publishing until one arrives on the new connection.
        while not any(e["metadata"]["tag"] == "after" for e in server.events()) and n < 100:
            publisher.publish(event(n, tag="after"))
            n += 1
            wait_until(lambda: server.count() > 1, timeout=0.2)
        assert any(e["metadata"]["tag"] == "after" for e in server.events())
        assert publisher.stats()["connects"] == 2
    finally:
        publisher.close()


def test_tcp_forked_child_sends_its_own_lines_once_and_not_the_parents(server: LineServer) -> None:
    # backoff_initial large enough that the parent's lines are still buffered at fork time.
    publisher = TcpPublisher("127.0.0.1", server.port, backoff_initial=1.0, backoff_max=1.0)
    try:
        for n in range(10):
            publisher.publish(event(n, tag="parent"))
        assert wait_until(lambda: publisher.stats()["peer_down"] is True)
        server.listen()
        assert publisher.stats()["buffered"] == 10
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (an RQ work horse)
            code = 1
            try:
                for n in range(20):
                    publisher.publish(event(n, tag="child"))
                stats = publisher.stats()
                ok = publisher.flush(10) and stats["buffered"] <= 20
                code = 0 if ok and publisher.stats()["sent"] == 20 else 2
            finally:
                os._exit(code)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        assert wait_until(lambda: server.count() >= 30)
        assert publisher.flush(10) is True
        received = tags(server.events())
        assert sorted(received) == sorted([("parent", n) for n in range(10)] + [("child", n) for n in range(20)])
    finally:
        publisher.close()


def test_tcp_close_stops_the_sender_and_drops_later_events(server: LineServer) -> None:
    server.listen()
    publisher = TcpPublisher("127.0.0.1", server.port)
    publisher.publish(event(1))
    publisher.close()
    assert server.count() == 1 or wait_until(lambda: server.count() == 1)
    publisher.publish(event(2))
    assert publisher.dropped == 1
    assert not any(t.name == "clues-tcp-publisher" and t.is_alive() for t in _threads_of(publisher))


def _threads_of(publisher: TcpPublisher) -> list[threading.Thread]:
    thread = publisher._thread
    return [thread] if thread is not None else []


# -- UdpPublisher -----------------------------------------------------------------------------


@pytest.fixture
def udp_receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)  # a bound on the wait, not a synchronisation sleep
    yield sock
    sock.close()


def test_udp_one_datagram_per_event(udp_receiver: socket.socket) -> None:
    publisher = UdpPublisher("127.0.0.1", udp_receiver.getsockname()[1])
    for n in range(20):
        publisher.publish(event(n))
    datagrams = [udp_receiver.recv(65536) for _ in range(20)]
    assert all(d.endswith(b"\n") and d.count(b"\n") == 1 for d in datagrams)
    assert [json.loads(d)["metadata"]["n"] for d in datagrams] == list(range(20))
    assert publisher.stats() == {"sent": 20, "truncated": 0, "dropped": 0}


def test_udp_oversize_events_are_shrunk_to_valid_json_or_dropped(udp_receiver: socket.socket) -> None:
    limit = 700
    publisher = UdpPublisher("127.0.0.1", udp_receiver.getsockname()[1], max_datagram=limit)

    big_args = event(1, pad=5000)  # step 1: args go, metadata stays whole
    publisher.publish(big_args)
    first = udp_receiver.recv(65536)
    assert len(first) <= limit
    decoded = json.loads(first)
    assert list(decoded) == ["event_type", "timestamp", "queue", "metadata", "worker_class", "args"]
    assert decoded["args"] == "<truncated>"
    assert decoded["metadata"]["clues_truncated"] == len(big_args.encode()) + 1
    assert decoded["metadata"]["event_hash"] == f"{1:032x}"

    backtrace = [f"  File 'jobs.py', line {i}, in work" for i in range(100)]
    big_meta = event(2, pad=5000, backtrace=backtrace, message="m" * 50)  # step 2 too
    publisher.publish(big_meta)
    decoded = json.loads(udp_receiver.recv(65536))
    assert decoded["metadata"]["backtrace"] == "<truncated>"
    assert decoded["metadata"]["message"] == "m" * 50  # short values survive
    assert decoded["metadata"]["event_hash"] == f"{2:032x}"

    publisher.publish("not json " * 200)  # cannot be shrunk: dropped
    publisher.publish(event(3))  # the next datagram is this one, so nothing was sent for the drop
    assert json.loads(udp_receiver.recv(65536))["metadata"]["n"] == 3
    many_small: dict[str, Any] = {f"k{i}": i for i in range(200)}
    hopeless = event(4, **many_small)  # many small metadata values: cannot shrink below the limit
    publisher.publish(hopeless)
    publisher.publish(event(5))
    assert json.loads(udp_receiver.recv(65536))["metadata"]["n"] == 5
    assert publisher.stats() == {"sent": 3 + 1, "truncated": 2, "dropped": 2}


def test_udp_without_a_listener_or_resolvable_host_does_not_raise() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now
    publisher = UdpPublisher("127.0.0.1", port)
    for n in range(5):
        publisher.publish(event(n))
    assert publisher.stats()["dropped"] == 0  # fire and forget: no ICMP errors on unconnected sends

    unresolvable = UdpPublisher("no-such-host.invalid", 9)
    for n in range(5):
        unresolvable.publish(event(n))
    assert unresolvable.dropped == 5
    assert error_count(Place.LEGACY_PUBLISHER) == 1  # lookup not retried per event
