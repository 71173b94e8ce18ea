"""Keep clues' own failures away from users' jobs.

Every piece of instrumentation code runs behind :func:`guarded` or
:meth:`ErrorReport.record`: an exception inside clues is caught, logged once per
(place, exception type) — not once per job — and counted, so a broken
publisher or exporter never fails, slows down or floods the logs of a worker.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

_logger = logging.getLogger("opentelemetry_instrumentation_clues")

T = TypeVar("T")


class ErrorReport:
    """Counts clues' internal errors and logs the first of each kind.

    A forked work horse is a short-lived copy of its worker: were it to log its own
    "first" error, every job would log it again. So inside a horse new kinds are
    held back (:meth:`hold_back`) and handed to the worker (:meth:`take_held`), which
    records them (:meth:`record_from_horse`) and logs each kind once.
    """

    def __init__(self, logger: logging.Logger = _logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._held: dict[str, list] | None = None  # in a horse: key -> [count, message]

    def record(self, where: str, exc: BaseException) -> None:
        key = f"{where}:{type(exc).__name__}"
        with self._lock:
            self._counts[key] += 1
            first = self._counts[key] == 1
            if self._held is not None:
                held = self._held.setdefault(key, [0, self._message(where, exc)])
                held[0] += 1
                return
        if first:
            self._logger.error(self._message(where, exc), exc_info=exc)

    @staticmethod
    def _message(where: str, exc: BaseException) -> str:
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
        for key, (count, message) in held.items():
            with self._lock:
                first = self._counts[key] == 0
                self._counts[key] += int(count)
            if first:
                self._logger.error("%s (in a work horse)", message)

    control_flow: tuple[type[BaseException], ...] = ()  # never swallowed: rq's own timeouts (set at instrument)

    def is_control_flow(self, exc: BaseException) -> bool:
        return isinstance(exc, self.control_flow)

    def counts(self) -> dict[str, int]:
        """Errors seen so far, by ``place:ExceptionType``."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


errors = ErrorReport()


class guarded:  # lower case: used like a function, ``with guarded("where"):``
    """Run a block of instrumentation code; swallow and report what it raises.

    A class rather than ``@contextmanager``: it runs several times per job, and a
    generator-based context manager costs several times more to enter and leave."""

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None or not isinstance(exc, Exception) or errors.is_control_flow(exc):
            return False  # BaseExceptions (SystemExit, the horse's flush alarm) and rq's timeouts pass through
        errors.record(self.where, exc)  # any failure of ours must not reach the job
        return True


def call_guarded(where: str, func: Callable[..., T], *args: object, default: T, **kwargs: object) -> T:
    """Call ``func``; on error report it and return ``default``."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        if errors.is_control_flow(exc):
            raise
        errors.record(where, exc)
        return default
