"""``UdpPublisher(host, port)``: one datagram per event, fire and forget."""

from __future__ import annotations

import json
import socket
import threading
import time

from opentelemetry_instrumentation_clues.legacy.publishers import _forksafe
from opentelemetry_instrumentation_clues.legacy.publishers.base import encode_line
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors

__all__ = ["UdpPublisher"]

TRUNCATED = "<truncated>"
_LONG_METADATA_VALUE = 100  # bytes of JSON; event_hash, hostname, process, times stay below it
_RESOLVE_RETRY = 5.0  # seconds between retries of a failed name lookup


class UdpPublisher:
    """Sends each event as one datagram (the line plus ``\\n``, so line-based receivers work too).

    ``publish`` never blocks: the socket is non-blocking, and a datagram the kernel
    cannot take right now is dropped and counted. The host name is looked up once, on
    the first event (a failed lookup is retried at most every 5 s, dropping events
    meanwhile).

    **Events larger than** ``max_datagram`` **bytes** are shrunk so the receiver still
    gets valid JSON that keeps the event's identity (``event_type``, ``timestamp``,
    ``queue``, ``worker_class``, ``event_hash``, ``hostname``, ``process``):

    1. ``args`` is replaced by the string ``"<truncated>"`` and ``metadata`` gains
       ``"clues_truncated": <original size in bytes>``;
    2. if still too large, every ``metadata`` value whose JSON is longer than 100 bytes
       (backtraces, long messages, bulky user metadata) becomes ``"<truncated>"`` too.

    If it still does not fit, or the line is not a JSON object (a custom marshaller),
    the event is dropped. :meth:`stats` counts ``sent``, ``truncated`` and ``dropped``.

    ``max_datagram`` defaults to 8192, the default message size limit of rsyslog and
    within most UDP log inputs; IPv4 allows at most 65507, and datagrams above the path
    MTU (~1472 bytes on Ethernet) are fragmented, which lossy networks punish.
    """

    def __init__(self, host: str, port: int, *, max_datagram: int = 8192) -> None:
        self._host, self._port = host, port
        self._max_datagram = max_datagram
        self._detail = f"UdpPublisher({host}:{port})"  # names it in the log message
        self._lock = threading.Lock()  # guards the lazy set-up only; sendto needs no lock
        self._sock: socket.socket | None = None
        self._address: tuple[str, int] | None = None
        self._retry_at = 0.0
        self._sent = self._truncated = self._dropped = 0
        _forksafe.register(self)

    def publish(self, line: str) -> None:
        try:
            data = encode_line(line)
            if len(data) > self._max_datagram:
                shrunk = shrink_event(data, self._max_datagram)
                if shrunk is None:
                    self._dropped += 1
                    return
                self._truncated += 1
                data = shrunk
            if self._sock is None and not self._setup():
                self._dropped += 1
                return
            assert self._sock is not None and self._address is not None
            self._sock.sendto(data, self._address)
            self._sent += 1
        except Exception as exc:  # BlockingIOError (buffer full), EMSGSIZE, unreachable, ...
            self._dropped += 1
            errors.record(Place.LEGACY_PUBLISHER, exc, self._detail)

    @property
    def dropped(self) -> int:
        return self._dropped

    def stats(self) -> dict[str, int]:
        """Counters of this process (``+=`` under the GIL: approximate across threads)."""
        return {"sent": self._sent, "truncated": self._truncated, "dropped": self._dropped}

    def flush(self, timeout: float | None = None) -> bool:
        return True  # nothing is buffered in the process

    def close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _setup(self) -> bool:
        with self._lock:
            if self._sock is not None:
                return True
            if time.monotonic() < self._retry_at:
                return False
            try:
                family, kind, proto, _, address = socket.getaddrinfo(self._host, self._port, type=socket.SOCK_DGRAM)[0]
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
            except Exception:
                self._retry_at = time.monotonic() + _RESOLVE_RETRY
                raise
            # Unconnected sendto: a closed port does not turn into errors on later sends.
            self._address = (str(address[0]), int(address[1]))
            self._sock = sock
            return True

    def _after_fork_in_child(self) -> None:
        # A shared UDP socket is fine (each sendto is one whole datagram); only the lock
        # may have been held by a thread that did not survive the fork.
        self._lock = threading.Lock()
        self._sent = self._truncated = self._dropped = 0

    def __repr__(self) -> str:
        return f"UdpPublisher({self._host!r}, {self._port!r})"


def shrink_event(data: bytes, limit: int) -> bytes | None:
    """Apply the oversize rule (see :class:`UdpPublisher`); ``None`` when it cannot fit."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    metadata = event.get("metadata")
    if not isinstance(metadata, dict):  # not a clues event shape; keep what we can
        metadata = event["metadata"] = {}
    if "args" in event:
        event["args"] = TRUNCATED
    metadata["clues_truncated"] = len(data)
    shrunk = _dump_line(event)
    if len(shrunk) <= limit:
        return shrunk
    for key, value in metadata.items():
        if key != "clues_truncated" and len(_dump_line(value)) > _LONG_METADATA_VALUE:
            metadata[key] = TRUNCATED
    shrunk = _dump_line(event)
    return shrunk if len(shrunk) <= limit else None


def _dump_line(value: object) -> bytes:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    # backslashreplace turns a lone surrogate into a \udXXX escape: still valid inside a JSON string.
    return text.encode("utf-8", "backslashreplace") + b"\n"
