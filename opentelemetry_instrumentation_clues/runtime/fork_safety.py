"""Keep a forked work horse off its parent's exporter connections and half-done imports.

A forked child inherits the parent's OTLP/HTTP exporter with its connection
pool, and with whatever locks the parent's export thread held at the instant of
``fork()``. A horse that exports through that pool can block forever on a lock
no thread will release, or interleave bytes on a shared socket. So in every
forked child the HTTP exporters get a fresh session (same headers), made when the
child first exports (most horses never do: clues' own telemetry goes to the worker),
and the horse's final flush is bounded in time whatever the exporter does.

The exporters are found by walking each provider's objects once and again only when
its processors change: a fork pays a few attribute reads, not the walk.

Imports are such a lock too. The exporters import lazily (requests imports
``netrc`` on a session's first request): were the worker to fork while one of
its export threads is inside such an import, the module would stay locked in
the horse, owned by a thread that does not exist there, and the horse's own
export would wait on it until the flush timeout cut it, losing the job's
telemetry. So before a fork the forking thread waits, briefly, for other
threads' imports to finish.
"""

from __future__ import annotations

import collections
import importlib._bootstrap as import_machinery
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from opentelemetry_instrumentation_clues.runtime import at_fork
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors, guarded

IMPORT_WAIT_SECONDS = 1.0  # an import normally takes milliseconds; never hold a fork longer than this

# Attributes that lead from an SDK provider to its exporters (opentelemetry-sdk 1.39+).
_PATH_ATTRIBUTES = (
    "_active_span_processor",
    "_span_processors",
    "_multi_log_record_processor",
    "_log_record_processors",
    "_batch_processor",
    "inner",  # clues' detachable legacy processor
    "_exporter",
    "span_exporter",
    "_client",  # OTLP/HTTP exporters from 1.45: exporter._client._transport._session
    "_transport",
    "_sdk_config",
    "metric_readers",
)

_provider_sources: list[Callable[[], Any]] = []


class _Exporters:
    """The batch processors and HTTP-session owners the watched providers lead to, found
    by one walk and found again only when a provider or its list of processors changes."""

    def __init__(self) -> None:
        self._key: tuple[Any, ...] = ()
        self.batch_processors: list[Any] = []
        self.session_owners: list[Any] = []

    def current(self) -> _Exporters:
        roots = [get_provider() for get_provider in _provider_sources]
        key = tuple(part for root in roots for part in _processor_lists(root))
        if len(key) != len(self._key) or any(a is not b for a, b in zip(key, self._key, strict=True)):
            nodes = [node for root in roots for node in _reachable(root)]
            self.batch_processors = [node for node in nodes if _is_batch_processor(node)]
            self.session_owners = [node for node in nodes if _is_requests_session(getattr(node, "_session", None))]
            self._key = key  # holds the objects, so an id cannot be reused while cached
        return self


def _processor_lists(root: Any) -> tuple[Any, ...]:
    """What changes when processors or readers are added: the SDK replaces these tuples."""
    spans = getattr(getattr(root, "_active_span_processor", None), "_span_processors", None)
    logs = getattr(getattr(root, "_multi_log_record_processor", None), "_log_record_processors", None)
    readers = getattr(getattr(root, "_sdk_config", None), "metric_readers", None)
    return (root, spans, logs, readers)


_exporters = _Exporters()


def watch(providers: list[Callable[[], Any]]) -> None:
    """Make every fork wait for other threads' imports, and reset these providers'
    HTTP exporter sessions in every forked child; ``watch([])`` stops both."""
    _provider_sources[:] = providers
    at_fork.register(
        "fork safety",
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


def _before_fork() -> None:
    if not _provider_sources:
        return
    with guarded(Place.FORK_SET_ASIDE):
        _set_queues_aside()
    with guarded(Place.FORK_IMPORTS):
        if not let_other_threads_finish_imports(IMPORT_WAIT_SECONDS):
            still = TimeoutError(f"another thread was still importing after {IMPORT_WAIT_SECONDS} s")
            errors.record(Place.FORK_IMPORTS, still)


def let_other_threads_finish_imports(timeout_seconds: float) -> bool:
    """Wait until no other thread holds a module's import lock; False if one still does at the timeout.

    Costs one dictionary check when nothing is being imported, the usual case."""
    locks = getattr(import_machinery, "_module_locks", None)  # name -> weakref to the lock; see importlib._bootstrap
    if not locks:
        return True
    deadline = time.monotonic() + timeout_seconds
    while _import_in_progress_elsewhere(locks):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)  # lets the importing thread run
    return True


def _import_in_progress_elsewhere(locks: dict[str, Any]) -> bool:
    me = threading.get_ident()
    for ref in list(locks.values()):
        owner = getattr(ref(), "owner", None)  # a thread ident while held, None when free
        if owner is not None and owner != me:
            return True
    return False


# Batch processors whose queue is set aside while the process forks: (processor, queue, stand-in).
_set_aside: list[tuple[Any, Any, Any]] = []
_inherited: list[tuple[Any, Any, Any]] = []  # in a child: the parent's queues, never touched


def _set_queues_aside() -> None:
    """Give each batch processor an empty queue for the instant of the fork.

    The SDK's after-fork handler clears every batch queue in the child; clearing one that
    holds the worker's unexported spans and log records (what clues publishes for its
    horses) frees each of them in the horse: copy-on-write faults and deallocations, about
    a millisecond per fork. With the queue set aside the child clears an empty one and never
    touches the parent's. A processor in the middle of an export keeps its queue."""
    for processor in _batch_processors():
        lock, queue = processor._export_lock, processor._queue
        if not queue or not lock.acquire(blocking=False):
            continue
        try:
            stand_in: collections.deque[Any] = collections.deque(maxlen=queue.maxlen)
            processor._queue = stand_in
            _set_aside.append((processor, queue, stand_in))
        finally:
            lock.release()


def _after_fork_in_parent() -> None:
    while _set_aside:
        processor, queue, stand_in = _set_aside.pop()
        processor._queue = queue
        # What another thread emitted during the fork went to the stand-in: newest first, as in the queue.
        queue.extendleft(reversed(stand_in))


def _after_fork_in_child() -> None:
    _inherited.extend(_set_aside)  # kept, not freed: the parent's telemetry is not the child's
    _set_aside.clear()
    _reset_sessions_in_child()


def _batch_processors() -> list[Any]:
    return _exporters.current().batch_processors


def _is_batch_processor(node: Any) -> bool:
    return isinstance(getattr(node, "_queue", None), collections.deque) and hasattr(node, "_export_lock")


def _reset_sessions_in_child() -> None:
    if not _provider_sources:
        return
    with guarded(Place.FORK_RESET):
        # Found by the before-fork hook an instant ago: the child only reads the list (each
        # object the child touches is a page copied from its parent).
        for owner in _exporters.session_owners:
            if _is_requests_session(owner._session):
                owner._session = _FreshSessionOnFirstUse(owner, owner._session)


def _reachable(root: Any, depth: int = 7) -> Iterator[Any]:
    """The objects a provider leads to, down to its exporters and their transports."""
    seen: set[int] = set()
    frontier = [root]
    for _ in range(depth):
        following: list[Any] = []
        for node in frontier:
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            yield node
            if isinstance(node, (list, tuple)):
                following.extend(node)
                continue
            following.extend(getattr(node, name, None) for name in _PATH_ATTRIBUTES)
        frontier = following


_GRPC_OFF = frozenset({"0", "false", "no", "off"})


class GrpcExports(NamedTuple):
    """What gRPC's fork hazard concerns in a process (see grpc_relay)."""

    exporters: list[Any]  # OTLP/gRPC exporters that can make a fresh channel of their own
    export_locks: list[Any]  # held by their batch processors and metric readers while exporting
    unrelayable: bool  # an OTLP/gRPC exporter from an SDK too old to remake its channel


def grpc_exports(providers: list[Callable[[], Any]]) -> GrpcExports:
    """The OTLP/gRPC exporters these providers lead to, while gRPC runs its fork handlers.

    Those handlers give up when a thread is inside a gRPC call at the moment of ``fork()``
    (an export to a slow or hung collector), and the child can then crash before the job
    runs. ``GRPC_ENABLE_FORK_SUPPORT=false`` turns them off (nothing to find then); gRPC
    reads it when it starts, before clues is loaded, so only the environment can set it."""
    if os.environ.get("GRPC_ENABLE_FORK_SUPPORT", "").strip().lower() in _GRPC_OFF:
        return GrpcExports([], [], unrelayable=False)
    nodes = [node for get_provider in providers for node in _reachable(get_provider())]
    grpc_nodes = [node for node in nodes if type(node).__module__.startswith("opentelemetry.exporter.otlp.proto.grpc")]
    exporters = [node for node in grpc_nodes if callable(getattr(node, "_initialize_channel_and_stub", None))]
    locks = [
        node._export_lock
        for node in nodes
        if hasattr(node, "_export_lock") and any(getattr(node, "_exporter", None) is exporter for exporter in exporters)
    ]
    return GrpcExports(exporters, locks, unrelayable=len(exporters) < len(grpc_nodes))


def _is_requests_session(candidate: Any) -> bool:
    return callable(getattr(candidate, "request", None)) and callable(getattr(candidate, "mount", None))


# What the OTLP exporters configure on their session; the connection pools are left behind.
_SESSION_SETTINGS = ("auth", "proxies", "params", "verify", "cert", "trust_env", "max_redirects")


class _FreshSessionOnFirstUse:
    """Stands in for an exporter's inherited session in a forked child until the child first
    uses it, then puts a fresh one in its place: a requests session costs about a millisecond
    to make, and most horses never export."""

    def __init__(self, owner: Any, inherited: Any) -> None:
        self._owner = owner
        self._inherited = inherited

    def __getattr__(self, name: str) -> Any:
        return getattr(_renew_session(self._owner, self._inherited), name)


def _renew_session(owner: Any, old: Any) -> Any:
    new = type(old)()
    new.headers.clear()
    new.headers.update(old.headers)
    for setting in _SESSION_SETTINGS:
        if hasattr(old, setting):
            setattr(new, setting, getattr(old, setting))
    # The old session is dropped, not closed: its sockets still belong to the parent.
    owner._session = new
    return new
