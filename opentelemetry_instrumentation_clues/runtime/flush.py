"""Flush buffered telemetry before a work horse ends with ``os._exit``.

``os._exit`` skips atexit, so whatever the SDK's batch processors hold in a
forked work horse would be lost. Only the horse flushes: a long-lived process
(SimpleWorker, the worker parent) lets its batch processors export in the
background, so jobs never wait on an export there.
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry_instrumentation_clues.runtime.safety import Place, errors, guarded
from opentelemetry_instrumentation_clues.runtime.threads import run_with_timeout

_logger = logging.getLogger("opentelemetry_instrumentation_clues")


class FlushTimedOut(TimeoutError):
    """The work horse gave up waiting for its telemetry export."""


DEGRADED_FLUSH_MILLIS = 50
PROBE_EVERY_SECONDS = 10.0  # while degraded, one horse this often gets the full budget
REPORT_EVERY_SECONDS = 60.0  # while flushes keep failing, say so this often


class FlushBudget:
    """How long a horse may flush, decided by the worker before each fork.

    When a horse's flush times out (the collector is down or far away), the next
    horses get a short budget, so jobs keep their pace instead of each waiting the
    full timeout for an export that cannot succeed. A degraded budget probes its
    way back: every ``PROBE_EVERY_SECONDS`` one horse gets the full budget, and a
    probe that flushes in time restores it. Failed flushes are counted in
    ``error_counts()`` and, while they go on, logged once a minute with their number.
    """

    def __init__(self, full_millis: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.full_millis = full_millis
        self.millis = full_millis
        self._clock = clock
        self._next_probe = 0.0
        self._failed_since_report = 0
        self._next_report = 0.0

    @property
    def degraded(self) -> bool:
        return self.millis < self.full_millis

    def for_next_horse(self) -> int:
        """The budget the next horse gets: the degraded one, or now and then a probe at full length."""
        if self.degraded and self._clock() >= self._next_probe:
            self._next_probe = self._clock() + PROBE_EVERY_SECONDS
            return self.full_millis
        return self.millis

    def update(self, flushed_in_time: bool) -> None:
        if flushed_in_time:
            if self.degraded:
                _logger.warning("clues: work horses flush in time again; their flush budget is %d ms", self.full_millis)
            self.millis = self.full_millis
            return
        self._failed_since_report += 1
        now = self._clock()
        if not self.degraded:
            self.millis = min(self.full_millis, DEGRADED_FLUSH_MILLIS)
            self._next_probe = now + PROBE_EVERY_SECONDS
            self._next_report = now + REPORT_EVERY_SECONDS
            self._failed_since_report = 0
            errors.record(
                Place.FLUSH,
                FlushTimedOut(
                    f"exports are not getting through; horses now flush within {self.millis} ms, "
                    f"with a full-length try every {PROBE_EVERY_SECONDS:g} s"
                ),
            )
        elif now >= self._next_report:
            _logger.warning(
                "clues: %d work horse flushes timed out in the last %d s; what they held was lost",
                self._failed_since_report,
                round(REPORT_EVERY_SECONDS),
            )
            self._failed_since_report = 0
            self._next_report = now + REPORT_EVERY_SECONDS


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
            # In a copy of the context: an alarm cutting an export leaves what the SDK attached
            # (its suppress-instrumentation flag) attached, and it must not outlive the flush.
            contextvars.copy_context().run(flush)
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
            with guarded(Place.FLUSH):
                force_flush = getattr(get_provider(), "force_flush", None)
                if force_flush is not None:
                    force_flush(max(1, int((deadline - time.monotonic()) * 1000)))

    flushed = _flush_under_alarm(flush, timeout_millis) if in_horse else None
    if flushed is None:
        flushed = run_with_timeout(flush, timeout_millis / 1000)
    if not flushed:
        errors.record(Place.FLUSH, FlushTimedOut(f"no flush within {timeout_millis} ms"))
        return False
    return True


# Where the SDK's batch processors keep what they have not exported yet (opentelemetry-sdk 1.39+).
_PROCESSOR_PATHS = ("_active_span_processor", "_multi_log_record_processor")
_PROCESSOR_LISTS = ("_span_processors", "_log_record_processors")
_WRAPPED = ("_batch_processor", "inner", "_inner")
_HOLDS_NOTHING = frozenset({"SimpleSpanProcessor", "SimpleLogRecordProcessor"})  # they export as data comes


def holds_telemetry(providers: list[Callable[[], Any]]) -> bool:
    """Whether a flush would export anything: some processor has data queued, or is of a
    kind whose queue cannot be seen (then assume it has)."""
    for get_provider in providers:
        provider = get_provider()
        if not callable(getattr(provider, "force_flush", None)):
            continue  # the API's no-op provider
        processors = _processors(provider)
        if processors is None or any(_holds(processor) for processor in processors):
            return True
    return False


def _processors(provider: Any) -> list[Any] | None:
    """The provider's processors; None for a provider laid out in a way not known here."""
    for path in _PROCESSOR_PATHS:
        multi = getattr(provider, path, None)
        for name in _PROCESSOR_LISTS:
            processors = getattr(multi, name, None)
            if processors is not None:
                return list(processors)
    return None


def _holds(processor: Any, depth: int = 3) -> bool:
    queue = getattr(processor, "_queue", None)
    if queue is not None:
        return len(queue) > 0
    if type(processor).__name__ in _HOLDS_NOTHING:
        return False
    for name in _WRAPPED:
        inner = getattr(processor, name, None)
        if inner is not None and depth > 0:
            return _holds(inner, depth - 1)
    return True
