"""Keep clues' own failures away from users' jobs.

Every piece of instrumentation code runs behind :func:`guarded` or
:meth:`ErrorReport.record`: an exception inside clues is caught, logged once per
(place, exception type) — not once per job — and counted, so a broken
publisher or exporter never fails, slows down or floods the logs of a worker.

A place is a :class:`Place`, one member per code path: ``error_counts()`` keys are
``"{place.value}:{ExceptionType}"``, a closed set. What varies within a place (an event
type, which publisher) goes in the log message as ``detail``, never in the key.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from enum import Enum
from types import TracebackType
from typing import TypeVar

_logger = logging.getLogger("opentelemetry_instrumentation_clues")

T = TypeVar("T")


class Place(str, Enum):
    """Where clues caught one of its own errors: one member per code path."""

    # Sends (instrumentation/enqueue_hooks.py)
    ENQUEUE_BEGIN = "enqueue.begin"  # starting a send span and its job's clues (enqueue, schedule, dependencies)
    ENQUEUE_FINISH = "enqueue.finish"  # publishing a send (event, sent metric, span end); a deferred job's send
    ENQUEUE_ERROR = "enqueue.error"  # recording a send that raised (rq's exception still reaches the caller)
    CANCEL_BEGIN = "cancel.begin"  # starting a cancel's span (Job.cancel)
    # Attempts in the worker (instrumentation/worker_hooks.py, abandoned.py)
    WORKER_EXPORTERS = "worker.exporters"  # a worker starting: its exporters (gRPC fork hazard), fork_resources
    WORKER_DEQUEUED = "worker.dequeued"  # beginning an attempt at dequeue
    WORKER_PERFORM_STARTED = "worker.perform_started"  # the process span and started event (perform_job)
    WORKER_SPAN_END = "worker.span_end"  # ending the process span in the process that ran the job
    WORKER_SUCCESS = "worker.success"  # the finished outcome (handle_job_success)
    WORKER_FAILURE = "worker.failure"  # the failed outcome: rq's exception, retries left, publishing
    WORKER_RETRY = "worker.retry"  # the outcome of a job that returned Retry (handle_job_retry)
    WORKER_ABANDONED = "worker.abandoned"  # the outcome of a job whose worker died, at registry clean-up
    # Queue(is_async=False): the job runs inside enqueue
    SYNC_BEGIN = "sync.begin"  # beginning the synchronous attempt (run_sync)
    SYNC_FAILURE = "sync.failure"  # catching the exception the job raised (run_job)
    SYNC_END = "sync.end"  # its outcome and span end
    # Forked and spawned work horses (worker_hooks.py, horse_reports.py, runtime/flush.py)
    HORSE_CHANNEL = "horse.channel"  # opening the report channel before the fork
    HORSE_SPAWN = "horse.spawn"  # handing the attempt to a spawned horse
    HORSE_FOLLOW = "horse.follow"  # the worker reading its horse's reports while it waits
    HORSE_END = "horse.end"  # after the horse: its last reports, a stopped job's outcome, the span end
    HORSE_HANDOFF = "horse.handoff"  # in the horse: sending a report to the worker
    HORSE_REPLAY = "horse.replay"  # in the worker: publishing a report of its horse
    FLUSH = "flush"  # force-flushing the SDK providers (a horse before os._exit, a stopping worker)
    # Fork safety (runtime/fork_safety.py)
    FORK_SET_ASIDE = "fork.set_aside"  # before a fork: setting the worker's unexported telemetry aside
    FORK_IMPORTS = "fork.imports"  # before a fork: waiting for other threads' imports
    FORK_RESET = "fork.reset"  # in a forked child: fresh exporter connections
    GRPC_RELAY = "grpc.relay"  # the relay process a forking worker's OTLP/gRPC calls go through (grpc_relay.py)
    # Telemetry (telemetry/emitter.py); the message names the event type
    METRIC = "metric"  # recording or forwarding a measurement
    SPAN_EVENT = "span_event"  # adding a lifecycle event to a span
    LOG_RECORD = "log_record"  # emitting or forwarding a lifecycle log record
    SPAN_STATUS = "span_status"  # marking a span failed
    # Values (instrumentation/job_context.py, values/)
    JOB_META = "job_meta"  # reading job.meta['clues'] (foreign or unreadable data)
    ARGS_SANITIZER = "args.sanitizer"  # the user's args_sanitizer
    ARGS_REPR = "args.repr"  # repr() of job arguments (args_repr), its time limit included
    # The legacy output (legacy/, instrumentation/preprocessing.py); the message names the publisher
    LEGACY_PREPROCESSOR = "legacy.preprocessor"  # the item preprocessor, its time limit included
    LEGACY_MARSHALLER = "legacy.marshaller"  # the event marshaller
    LEGACY_PUBLISHER = "legacy.publisher"  # publishing a line: a user's publisher, or a built-in one's write/send
    LEGACY_FLUSH = "legacy.flush"  # flushing a publisher
    LEGACY_CLOSE = "legacy.close"  # closing a publisher; detaching the legacy output in time
    LEGACY_FORK = "legacy.fork"  # a publisher renewing its locks and threads after fork


def _checked(place: Place) -> Place:
    if type(place) is not Place:  # mypy rejects a str; this catches untyped callers
        raise TypeError(f"a clues error place must be a Place, not {type(place).__name__} {place!r}")
    return place


class ErrorReport:
    """Counts clues' internal errors and logs the first of each kind.

    A kind is a key, ``place:ExceptionType``, and a ``detail`` (which publisher, which
    event type) that only the log message shows: each (key, detail) is logged once, each
    key counted every time.

    A forked work horse is a short-lived copy of its worker: were it to log its own
    "first" error, every job would log it again. So inside a horse new kinds are
    held back (:meth:`hold_back`) and handed to the worker (:meth:`take_held`), which
    records them (:meth:`record_from_horse`) and logs each kind once.
    """

    def __init__(self, logger: logging.Logger = _logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()  # (key, detail) seen, so logged (or handed to the worker)
        # In a horse: key -> [count, {detail: message}] (JSON: it travels to the worker).
        self._held: dict[str, list] | None = None

    def record(self, place: Place, exc: BaseException, detail: str = "") -> None:
        key = f"{_checked(place).value}:{type(exc).__name__}"
        with self._lock:
            self._counts[key] += 1
            first = (key, detail) not in self._logged
            self._logged.add((key, detail))
            if self._held is not None:
                held = self._held.setdefault(key, [0, {}])
                held[0] += 1
                if detail not in held[1]:
                    held[1][detail] = self._message(place, exc, detail)
                return
        if first:
            self._logger.error(self._message(place, exc, detail), exc_info=exc)

    @staticmethod
    def _message(place: Place, exc: BaseException, detail: str) -> str:
        where = f"{place.value} [{detail}]" if detail else place.value
        return (
            f"clues: {where} failed ({type(exc).__name__}: {exc}); the job is unaffected. "
            "Further errors of this kind are counted, not logged."
        )

    def hold_back(self) -> None:
        with self._lock:
            self._held = {}

    def take_held(self) -> dict[str, list]:
        with self._lock:
            held, self._held = self._held or {}, None
            return held

    def record_from_horse(self, held: dict[str, list]) -> None:
        """The errors a horse held back; keys and details arrive as plain strings (JSON)."""
        for key, (count, messages) in held.items():
            with self._lock:
                self._counts[key] += int(count)
                new = [m for detail, m in messages.items() if (key, detail) not in self._logged]
                self._logged.update((key, detail) for detail in messages)
            for message in new:
                self._logger.error("%s (in a work horse)", message)

    control_flow: tuple[type[BaseException], ...] = ()  # never swallowed: rq's own timeouts (set at instrument)

    def is_control_flow(self, exc: BaseException) -> bool:
        return isinstance(exc, self.control_flow)

    def swallow(self, place: Place, exc: Exception, detail: str = "") -> None:
        """For ``except Exception as exc:`` on the hottest paths, where ``guarded``'s three
        calls per block add up (a try block itself costs nothing): report ``exc``, or
        re-raise it if it is rq's control flow."""
        if isinstance(exc, self.control_flow):
            raise exc
        self.record(place, exc, detail)

    def counts(self) -> dict[str, int]:
        """Errors seen so far, by ``place:ExceptionType`` (``place`` a :class:`Place` value)."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._logged.clear()


errors = ErrorReport()


class guarded:  # lower case: used like a function, ``with guarded(Place.METRIC):``
    """Run a block of instrumentation code; swallow and report what it raises.

    A class rather than ``@contextmanager``: it runs several times per job, and a
    generator-based context manager costs several times more to enter and leave."""

    __slots__ = ("detail", "place")

    def __init__(self, place: Place, detail: str = "") -> None:
        if type(place) is not Place:  # inline: this runs several times per job
            _checked(place)
        self.place = place
        self.detail = detail

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None or not isinstance(exc, Exception) or errors.is_control_flow(exc):
            return False  # BaseExceptions (SystemExit, the horse's flush alarm) and rq's timeouts pass through
        errors.record(self.place, exc, self.detail)  # any failure of ours must not reach the job
        return True


def call_guarded(place: Place, func: Callable[..., T], *args: object, default: T, **kwargs: object) -> T:
    """Call ``func``; on error report it and return ``default``."""
    if type(place) is not Place:  # inline, as in guarded: this runs several times per job
        _checked(place)
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        if errors.is_control_flow(exc):
            raise
        errors.record(place, exc)
        return default
