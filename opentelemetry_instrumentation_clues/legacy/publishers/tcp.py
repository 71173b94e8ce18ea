"""``TcpPublisher(host, port)``: newline-delimited events over TCP, never blocking the caller."""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
import time
from collections import deque

from opentelemetry_instrumentation_clues.legacy.publishers import _forksafe
from opentelemetry_instrumentation_clues.legacy.publishers.base import encode_line
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors

__all__ = ["TcpPublisher"]

_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)  # EPIPE as an exception even if SIGPIPE is not ignored


class TcpPublisher:
    """Sends one ``\\n``-terminated line per event to ``host:port`` (e.g. a Logstash or
    Vector ``tcp`` input with a JSON-lines codec).

    ``publish`` only appends to a bounded in-memory buffer; a daemon thread connects,
    sends in batches and reconnects with capped, jittered exponential backoff
    (``backoff_initial`` doubling up to ``backoff_max`` seconds).

    Loss is explicit and counted (:attr:`dropped`, :meth:`stats`), never blocking:

    - an event arriving while ``max_buffer`` lines are waiting is dropped (newest dropped,
      like the OpenTelemetry SDK's batch processors);
    - a batch whose send fails is dropped, not retried: part of it may have reached the
      peer, and re-sending would duplicate lines;
    - lines still buffered at ``close()`` after its flush timeout are dropped.

    :meth:`flush` waits, up to its timeout, until everything buffered was handed to the
    kernel. It returns ``False`` as soon as this process's sender finds the peer down
    (connection refused or failed send), so a dead collector never holds up a work horse;
    an unreachable (black-holed) one costs at most ``connect_timeout``. ``None`` means
    ``flush_timeout``.

    Fork safety: the sender thread does not survive ``os.fork()``. The child drops the
    copy of the parent's buffer (the parent still sends those lines), lets go of the
    parent's connection without shutting it down, and starts its own thread and
    connection on its first event. Counters restart at zero in the child.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_buffer: int = 10000,
        max_batch_bytes: int = 64 * 1024,
        connect_timeout: float = 2.0,
        send_timeout: float = 5.0,
        backoff_initial: float = 0.1,
        backoff_max: float = 10.0,
        flush_timeout: float = 5.0,
    ) -> None:
        self._address = (host, port)
        self._max_buffer = max_buffer
        self._max_batch_bytes = max_batch_bytes
        self._connect_timeout = connect_timeout
        self._send_timeout = send_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._flush_timeout = flush_timeout
        self._detail = f"TcpPublisher({host}:{port})"  # names it in the log message
        self._closing = False
        self._reset_process_state()
        _forksafe.register(self)

    def _reset_process_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._buffer: deque[bytes] = deque()
        self._in_flight = 0
        self._idle = False  # the sender waits for lines; publish() must wake it
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._sent = 0
        self._dropped = 0
        self._connects = 0
        # Whether this process's last connect or send failed. Not inherited across fork: a
        # work horse must try for itself, or the parent's stale view would drop its events.
        self._peer_down = False

    # -- caller side: never blocks beyond a short lock hold -------------------------------

    def publish(self, line: str) -> None:
        try:
            data = encode_line(line)
            with self._cond:
                if self._closing or len(self._buffer) >= self._max_buffer:
                    self._dropped += 1
                    return
                self._buffer.append(data)
                if self._thread is None:
                    self._start_sender()
                elif self._idle:
                    self._cond.notify()
        except Exception as exc:
            errors.record(Place.LEGACY_PUBLISHER, exc, self._detail)

    @property
    def dropped(self) -> int:
        """Events dropped by this process so far (buffer full, failed send, closed)."""
        return self._dropped

    def stats(self) -> dict[str, int | bool]:
        """Counters of this process: ``sent`` lines, ``dropped``, ``buffered``, ``connects``,
        ``connected`` and ``peer_down`` (the last connect or send failed)."""
        with self._cond:
            return {
                "sent": self._sent,
                "dropped": self._dropped,
                "buffered": len(self._buffer) + self._in_flight,
                "connects": self._connects,
                "connected": self._sock is not None,
                "peer_down": self._peer_down,
            }

    def flush(self, timeout: float | None = None) -> bool:
        deadline = time.monotonic() + (self._flush_timeout if timeout is None else timeout)
        with self._cond:
            while self._buffer or self._in_flight:
                remaining = deadline - time.monotonic()
                if self._peer_down or self._thread is None or remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> None:
        """Flush (bounded by ``timeout``/``flush_timeout``), stop the sender, close the socket."""
        try:
            self.flush(timeout)
            with self._cond:
                self._closing = True
                self._dropped += len(self._buffer)
                self._buffer.clear()
                self._cond.notify_all()
                thread, sock = self._thread, self._sock
            if sock is not None:
                # Wakes a sender stuck in sendall() on a peer that stopped reading;
                # close() from this thread would not.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if thread is not None and thread is not threading.current_thread():
                thread.join(self._connect_timeout + 1.0)  # a connect() in progress is not interruptible
            self._disconnect()
        except Exception as exc:
            errors.record(Place.LEGACY_CLOSE, exc, self._detail)

    def _start_sender(self) -> None:
        thread = threading.Thread(target=self._run, name="clues-tcp-publisher", daemon=True)
        thread.start()
        self._thread = thread

    # -- sender thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug of ours: let the next publish() start a new sender
            errors.record(Place.LEGACY_PUBLISHER, exc, self._detail)
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _loop(self) -> None:
        backoff = self._backoff_initial
        while True:
            with self._cond:
                while not self._buffer and not self._closing:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                if self._closing:
                    return
            if self._sock is None:
                if not self._connect():
                    # Jitter keeps a fleet of workers from reconnecting in lockstep.
                    with self._cond:
                        self._cond.wait(random.uniform(backoff / 2, backoff))
                    backoff = min(backoff * 2, self._backoff_max)
                    continue
                backoff = self._backoff_initial
            self._send_batch()

    def _connect(self) -> bool:
        try:
            sock = socket.create_connection(self._address, timeout=self._connect_timeout)
            sock.settimeout(self._send_timeout)
        except Exception as exc:
            errors.record(Place.LEGACY_PUBLISHER, exc, self._detail)
            with self._cond:
                self._peer_down = True
                self._cond.notify_all()  # flush() waiters give up now
            return False
        with self._cond:
            self._sock = sock
            self._connects += 1
            self._peer_down = False
        return True

    def _send_batch(self) -> None:
        with self._cond:
            batch: list[bytes] = []
            size = 0
            while self._buffer and size < self._max_batch_bytes:
                data = self._buffer.popleft()
                batch.append(data)
                size += len(data)
            self._in_flight = len(batch)
        sock = self._sock
        try:
            if sock is None or _peer_closed(sock):
                raise ConnectionResetError("peer closed the connection")
            sock.sendall(b"".join(batch), _NOSIGNAL)
        except Exception as exc:
            if not self._closing:  # close() shuts the socket down under us on purpose
                errors.record(Place.LEGACY_PUBLISHER, exc, self._detail)
            self._disconnect()
            with self._cond:
                self._dropped += len(batch)
                self._in_flight = 0
                self._peer_down = True
                self._cond.notify_all()
            return
        with self._cond:
            self._sent += len(batch)
            self._in_flight = 0
            self._cond.notify_all()

    def _disconnect(self) -> None:
        with self._cond:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _after_fork_in_child(self) -> None:
        sock = self._sock
        self._reset_process_state()
        if sock is not None:
            # close() only drops this process's descriptor; shutdown() would also cut the
            # parent's connection, which its own sender thread is still using.
            with contextlib.suppress(OSError):
                sock.close()

    def __repr__(self) -> str:
        return f"TcpPublisher({self._address[0]!r}, {self._address[1]!r})"


def _peer_closed(sock: socket.socket) -> bool:
    """True if the peer has closed the connection (checked without blocking).

    Without this, the first batch after a collector restart would be "sent" into the dead
    connection and silently lost; the failure would only show on the next send.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return sock.recv(4096) == b""  # readable: EOF, or chatter from the peer we discard
    except BlockingIOError:
        return False
    except OSError:
        return True
