"""Make a forking worker's OTLP/gRPC calls in a relay process, so it never forks inside an RPC.

gRPC's fork handlers (on unless ``GRPC_ENABLE_FORK_SUPPORT=false`` is set before gRPC starts)
need no RPC in flight when the process forks. A forking rq worker's export threads are inside
an RPC nearly all the time when the collector is slow or hangs; gRPC then skips its handlers
("Other threads are currently calling into gRPC, skipping fork() handlers") and the child
crashes now and then in its first steps: a job lost before it runs.

So a forking worker with that hazard forks one relay process at an instant no export is in
flight (it holds every gRPC exporter's export lock across that fork). In the relay each
exporter makes itself a fresh channel with its own settings and the relay makes the RPCs; in
the worker each exporter's stub hands the serialized request to the relay over a socket and
waits for the outcome outside gRPC. The worker closes its own channels: with none left gRPC
shuts down there, and its fork handlers, about 1.5 ms of every fork while gRPC runs, have
nothing to do. It waits for gRPC's shutdown threads to end before it forks again: a child
forked while they run hangs in its first channel. The SDK's own export logic (retries, backoff,
deadlines, its metrics) still runs in the worker: an RPC error comes back as an ``RpcError`` with
the same code, details and retry delay. A horse forked later gets a direct channel of its own
on first use (a horse exports only spans its job made). A relay found gone is counted, its
exporters go direct again, and a new relay starts at the next fork that finds no export in flight.
"""

from __future__ import annotations

import glob
import os
import pickle
import signal
import socket
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc

from opentelemetry_instrumentation_clues.runtime import at_fork
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors, guarded

# How much longer than the RPC's own deadline the worker waits for the relay's answer.
ANSWER_MARGIN_SECONDS = 5.0
# How long a fork waits for an export lock before leaving the relay to the next fork: batch
# threads take their lock briefly on every wake-up, an export in flight holds it for the RPC.
LOCK_WAIT_SECONDS = 0.01
PROCESS_NAME = "clues-grpc-rela"  # what ps and top show for the relay (Linux keeps 15 characters)
# gRPC shuts down on threads of its own once its last channel closes; a child forked before they
# are gone inherits gRPC's locks held and hangs in its first channel. The worker waits at most
# this long for them before it forks again: they were gone within ~10 ms when measured, and
# where other channels (user code, a gRPC server) keep gRPC running they stay, and so may it.
SHUTDOWN_WAIT_SECONDS = 0.5
# The names (as /proc shows them: 15 characters) of gRPC core's threads, across versions.
GRPC_THREAD_PREFIXES = ("event_engine", "grpc", "lifeguard", "default-executo", "resolver-execu", "timer_manager")
_FRAME = struct.Struct("!II")  # lengths of the pickled header and of the serialized message
_RETRY_INFO = "google.rpc.retryinfo-bin"


class RelayedRpcError(grpc.RpcError):
    """The relay's RPC failed: what the SDK's exporter reads from an ``RpcError``."""

    def __init__(self, code: grpc.StatusCode, details: str, retry_info: bytes | None = None) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details, self._retry_info = code, details, retry_info

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((_RETRY_INFO, self._retry_info),) if self._retry_info else ()


class Relay:
    """The relay process as the worker sees it: its pid and one socket per exporter."""

    def __init__(self, pid: int, exporters: Sequence[Any], sockets: Sequence[socket.socket]) -> None:
        self.pid = pid
        self.exporters = list(exporters)
        self.sockets = list(sockets)
        self._lock = threading.Lock()
        self.gone = False

    def lose(self, reason: BaseException) -> None:
        """The relay cannot answer: count it once, stop it, and send these exporters direct again."""
        with self._lock:
            if self.gone:
                return
            self.gone = True
        errors.record(Place.GRPC_RELAY, reason)
        for sock in self.sockets:
            sock.close()
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass  # already reaped, or not ours to reap
        for exporter in self.exporters:
            _go_direct(exporter)


_relay: Relay | None = None
_forking_relay = False  # read in the relay process's own after-fork handler


def active() -> Relay | None:
    return _relay if _relay is not None and not _relay.gone else None


def ensure_started(exporters: Sequence[Any], export_locks: Sequence[Any]) -> Relay | None:
    """Start the relay for these exporters unless one runs; None when an export is in flight
    now (the next fork tries again) or there is nothing to relay."""
    global _relay
    if not exporters or active() is not None:
        return active()
    held = []
    try:
        for lock in export_locks:
            if not lock.acquire(timeout=LOCK_WAIT_SECONDS):
                return None  # an export is in flight: forking now is the hazard itself
            held.append(lock)
        with guarded(Place.GRPC_RELAY):
            _relay = _fork_relay(exporters)
    finally:
        for lock in held:
            lock.release()
    relay = active()
    if relay is not None:  # the worker's channels are closed: let gRPC finish shutting down (exports go to the relay)
        await_grpc_shutdown(SHUTDOWN_WAIT_SECONDS)
    return relay


def _fork_relay(exporters: Sequence[Any]) -> Relay:
    global _forking_relay
    at_fork.register("grpc relay", after_in_child=_after_fork_in_child)
    pairs = [socket.socketpair() for _ in exporters]
    _forking_relay = True
    try:
        pid = os.fork()
    except OSError:
        for pair in pairs:
            for sock in pair:
                sock.close()
        raise
    finally:
        _forking_relay = False
    if pid == 0:
        _run_relay(exporters, [relay_end for _, relay_end in pairs], [worker_end for worker_end, _ in pairs])
    for _, relay_end in pairs:
        relay_end.close()
    relay = Relay(pid, exporters, [worker_end for worker_end, _ in pairs])
    for exporter, sock in zip(exporters, relay.sockets, strict=True):
        exporter._client = _RelayedStub(relay, sock)
        exporter._initialize_channel_and_stub = _keep_relayed  # the SDK reconnects on UNAVAILABLE; the relay does
        # The worker's own channel goes: with no channel left, gRPC shuts down in the worker and its fork
        # handlers cost nothing (about 1.5 ms of a fork otherwise, each time they run).
        channel, exporter._channel = exporter._channel, None
        if channel is not None:
            channel.close()
    return relay


def await_grpc_shutdown(timeout_seconds: float) -> None:
    """Wait until gRPC's own threads have ended in this process, at most ``timeout_seconds``.

    Closing a process's last channel shuts gRPC down on its own threads, a few milliseconds
    after ``close()`` returns. A fork in that window copies gRPC's locks as those threads hold
    them, and the child's first channel then waits on them forever (seen: a horse exporting its
    job's spans hung in ``grpc.insecure_channel``)."""
    deadline = time.monotonic() + timeout_seconds
    while _grpc_threads_running() and time.monotonic() < deadline:
        time.sleep(0.001)  # C threads: nothing to await but their absence; they end within milliseconds


def _grpc_threads_running() -> bool:
    for path in glob.glob("/proc/self/task/*/comm"):
        try:
            with open(path) as comm:
                if comm.read().startswith(GRPC_THREAD_PREFIXES):
                    return True
        except OSError:
            continue  # the thread ended while we looked
    return False


def _keep_relayed() -> None:
    """Stands in for the exporter's reconnect in the worker: the relay reconnects its own channel."""


class _RelayedStub:
    """Stands in for an exporter's gRPC stub in the worker: ``Export`` is made by the relay."""

    def __init__(self, relay: Relay, sock: socket.socket) -> None:
        self._relay = relay
        self._socket = sock
        self._lock = threading.Lock()  # one call at a time on the socket

    def Export(self, request: Any, metadata: Any = None, timeout: float | None = None, **_: Any) -> None:
        header = {"method": method_path(type(request)), "metadata": metadata, "timeout": timeout}
        with self._lock:
            if self._relay.gone:
                raise RelayedRpcError(grpc.StatusCode.UNAVAILABLE, "clues' gRPC relay is gone")
            try:
                self._socket.settimeout((timeout or 0.0) + ANSWER_MARGIN_SECONDS)
                send(self._socket, header, request.SerializeToString())
                answer = receive(self._socket)
                if answer is None:
                    raise ConnectionError("clues' gRPC relay closed its socket")
            except OSError as exc:  # a timeout too: the stream is out of step, the relay is no use
                self._relay.lose(exc)
                raise RelayedRpcError(grpc.StatusCode.UNAVAILABLE, f"clues' gRPC relay is gone: {exc!r}") from None
        outcome = answer[0]
        if outcome["code"] != "OK":
            raise RelayedRpcError(grpc.StatusCode[outcome["code"]], outcome["details"], outcome.get("retry_info"))


def method_path(request_type: Any) -> str:
    """The RPC that takes this request: ``/package.Service/Method``, read from its proto file."""
    path = _method_paths.get(request_type)
    if path is None:
        path = _method_paths[request_type] = _find_method_path(request_type)
    return path


_method_paths: dict[Any, str] = {}


def _find_method_path(request_type: Any) -> str:
    for service in request_type.DESCRIPTOR.file.services_by_name.values():
        for method in service.methods:
            if method.input_type is request_type.DESCRIPTOR:
                return f"/{service.full_name}/{method.name}"
    raise LookupError(f"no service in {request_type.__name__}'s proto file takes it")


def send(sock: socket.socket, header: dict[str, Any], body: bytes) -> None:
    head = pickle.dumps(header)  # both ends are this process and its own fork: nothing else can write
    sock.sendall(_FRAME.pack(len(head), len(body)) + head + body)


def receive(sock: socket.socket) -> tuple[dict[str, Any], bytes] | None:
    """The next message, or None at the end of the stream."""
    prefix = _read_exactly(sock, _FRAME.size)
    if prefix is None:
        return None
    head_length, body_length = _FRAME.unpack(prefix)
    head = _read_exactly(sock, head_length)
    body = _read_exactly(sock, body_length)
    if head is None or body is None:
        return None
    return pickle.loads(head), body


def _read_exactly(sock: socket.socket, length: int) -> bytes | None:
    chunks, missing = [], length
    while missing:
        chunk = sock.recv(min(missing, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


# The relay process -------------------------------------------------------------------------


def _run_relay(
    exporters: Sequence[Any], sockets: Sequence[socket.socket], worker_ends: Sequence[socket.socket]
) -> None:
    """The relay's whole life: serve each exporter until the worker (and its horses) are gone."""
    status = 0
    try:
        _name_this_process(PROCESS_NAME)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and SIGTERM are for the worker; the relay ends after it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stopping worker still flushes through the relay
        for worker_end in worker_ends:
            worker_end.close()  # else the relay would never see the worker's end of the stream
        threads = [
            threading.Thread(target=_serve, args=(exporter, sock), name="clues-grpc-relay", daemon=True)
            for exporter, sock in zip(exporters, sockets, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:
        status = 1
    finally:
        os._exit(status)  # never return into the worker's code


def _name_this_process(name: str) -> None:
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name)
    except OSError:
        pass  # not Linux: the relay keeps the worker's name


def _serve(exporter: Any, sock: socket.socket) -> None:
    _go_direct(exporter)  # a fresh channel made by the exporter itself: endpoint, credentials, options
    calls: dict[str, Any] = {}
    while (message := receive(sock)) is not None:
        header, body = message
        method = header["method"]
        call = calls.get(method) or calls.setdefault(method, exporter._channel.unary_unary(method))
        try:
            call(body, metadata=header["metadata"], timeout=header["timeout"])  # bytes in, bytes out
            outcome: dict[str, Any] = {"code": "OK"}
        except grpc.RpcError as error:
            outcome = _outcome_of(error)
            if error.code() == grpc.StatusCode.UNAVAILABLE:  # as the SDK does: reconnect for the retry
                exporter._channel.close()
                _go_direct(exporter)
                calls.clear()
        except Exception as error:
            outcome = {"code": "UNKNOWN", "details": repr(error)}
        send(sock, outcome, b"")


def _outcome_of(error: grpc.RpcError) -> dict[str, Any]:
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = error.details() if callable(getattr(error, "details", None)) else None
    trailing = error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) else None
    return {
        "code": code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN",
        "details": details or "",
        "retry_info": dict(trailing or ()).get(_RETRY_INFO),
    }


# Direct channels -----------------------------------------------------------------------------


def _go_direct(exporter: Any) -> None:
    """Give the exporter its own channel and stub again, as its constructor made them."""
    exporter.__dict__.pop("_initialize_channel_and_stub", None)
    exporter._initialize_channel_and_stub()


class _DirectOnFirstUse:
    """Stands in for a relayed stub in a forked horse until the horse first exports: the horse
    is not the relay's client, and most horses never export."""

    def __init__(self, exporter: Any) -> None:
        self._exporter = exporter

    def __getattr__(self, name: str) -> Any:
        _go_direct(self._exporter)
        return getattr(self._exporter._client, name)


def _after_fork_in_child() -> None:
    """In a horse (any child but the relay): leave the worker's relay to the worker."""
    global _relay
    relay, _relay = _relay, None
    if relay is None or relay.gone or _forking_relay:
        return
    with guarded(Place.GRPC_RELAY):
        for sock in relay.sockets:
            sock.close()  # the child's copies; the worker's stay open
        for exporter in relay.exporters:
            exporter.__dict__.pop("_initialize_channel_and_stub", None)
            exporter._client = _DirectOnFirstUse(exporter)
