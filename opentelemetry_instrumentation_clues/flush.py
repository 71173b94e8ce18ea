"""Flush buffered telemetry before a work horse ends with ``os._exit``.

``os._exit`` skips atexit, so whatever the SDK's batch processors hold in a
forked work horse would be lost. Only the horse flushes: a long-lived process
(SimpleWorker, the worker parent) lets its batch processors export in the
background, so jobs never wait on an export there.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from .fork_safety import run_bounded
from .safety import errors, guarded


class FlushTimedOut(TimeoutError):
    """The work horse gave up waiting for its telemetry export."""


DEGRADED_FLUSH_MILLIS = 50


class FlushBudget:
    """How long a horse may flush, kept by the worker parent and inherited by each horse.

    When a horse's flush times out (the collector is down, say), the next horses
    get a short budget, so jobs keep their pace instead of each waiting the full
    timeout for an export that cannot succeed; the first horse that flushes in
    time restores the full budget.
    """

    def __init__(self, full_millis: int) -> None:
        self.full_millis = full_millis
        self.millis = full_millis

    @property
    def degraded(self) -> bool:
        return self.millis < self.full_millis

    def update(self, flushed_in_time: bool) -> None:
        if flushed_in_time:
            self.millis = self.full_millis
        elif not self.degraded:
            self.millis = min(self.full_millis, DEGRADED_FLUSH_MILLIS)
            errors.record(
                "flushing telemetry in the work horse",
                FlushTimedOut(f"exports are not getting through; horses now flush within {self.millis} ms"),
            )


class _FlushAlarm(BaseException):
    """Raised by SIGALRM into a horse's flush; a BaseException so no SDK ``except Exception`` eats it."""


def _flush_under_alarm(flush: Callable[[], None], timeout_millis: int) -> bool | None:
    """In a horse's main thread, bound the flush with SIGALRM: no thread to start in every fork.

    Returns None where an alarm cannot be used (not the main thread, or a timer already set)."""
    if threading.current_thread() is not threading.main_thread() or signal.getitimer(signal.ITIMER_REAL)[0]:
        return None

    def ring(signum: int, frame: Any) -> None:
        raise _FlushAlarm

    previous = signal.signal(signal.SIGALRM, ring)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_millis / 1000)
        try:
            flush()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _FlushAlarm:
        return False
    finally:
        signal.signal(signal.SIGALRM, previous)
    return True


def flush_all(providers: list[Callable[[], Any]], timeout_millis: int, in_horse: bool = False) -> bool:
    """Force-flush each provider that has ``force_flush`` (API-only no-ops do not), within the timeout.

    A work horse (``in_horse``), about to ``os._exit``, may be interrupted by an alarm;
    elsewhere the flush runs in a helper thread that is given up on after the timeout.
    Returns whether everything was flushed in time."""
    deadline = time.monotonic() + timeout_millis / 1000

    def flush() -> None:
        for get_provider in providers:
            with guarded("flushing telemetry in the work horse"):
                force_flush = getattr(get_provider(), "force_flush", None)
                if force_flush is not None:
                    force_flush(max(1, int((deadline - time.monotonic()) * 1000)))

    flushed = _flush_under_alarm(flush, timeout_millis) if in_horse else None
    if flushed is None:
        flushed = run_bounded(flush, timeout_millis / 1000)
    if not flushed:
        errors.record("flushing telemetry in the work horse", FlushTimedOut(f"no flush within {timeout_millis} ms"))
        return False
    return True
