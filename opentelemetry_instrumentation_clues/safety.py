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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

_logger = logging.getLogger("opentelemetry_instrumentation_clues")

T = TypeVar("T")


class ErrorReport:
    """Counts clues' internal errors and logs the first of each kind."""

    def __init__(self, logger: logging.Logger = _logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def record(self, where: str, exc: BaseException) -> None:
        key = f"{where}:{type(exc).__name__}"
        with self._lock:
            self._counts[key] += 1
            first = self._counts[key] == 1
        if first:
            self._logger.error(
                "clues: %s failed (%s: %s); the job is unaffected. Further errors of this kind "
                "are counted, not logged.",
                where,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )

    def counts(self) -> dict[str, int]:
        """Errors seen so far, by ``place:ExceptionType``."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


errors = ErrorReport()


@contextmanager
def guarded(where: str) -> Iterator[None]:
    """Run a block of instrumentation code; swallow and report what it raises."""
    try:
        yield
    except Exception as exc:  # any failure of ours must not reach the job
        errors.record(where, exc)


def call_guarded(where: str, func: Callable[..., T], *args: object, default: T, **kwargs: object) -> T:
    """Call ``func``; on error report it and return ``default``."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        errors.record(where, exc)
        return default
