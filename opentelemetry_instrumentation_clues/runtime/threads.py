"""Threads with a timeout: the one place clues runs something it may have to stop waiting for.

``run_with_timeout`` runs one action (an SDK flush, a publisher's shutdown) in a daemon thread and
waits at most so long: the SDK's ``force_flush`` ignores its timeout and exports in the caller's
thread, so a stuck export would otherwise hold the horse (and the worker) indefinitely.

``TimeLimitedCaller`` calls user code (the item preprocessor, ``repr()`` of job arguments) again and
again in a long-lived daemon thread with a copy of the caller's contextvars (OTel context included);
the caller waits at most ``timeout`` seconds. A call that overstays is abandoned with its thread, a
fresh thread serves later calls, and after a few abandoned threads the hook is switched off rather
than leaking more.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from opentelemetry_instrumentation_clues.runtime.safety import Place, errors

MAX_ABANDONED_THREADS = 3


class CallTimedOut(TimeoutError):
    pass


class _Call:
    __slots__ = ("args", "context", "done", "error", "func")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.func = func
        self.args = args
        self.context = contextvars.copy_context()
        self.done = threading.Event()
        self.error: BaseException | None = None


def run_with_timeout(action: Callable[[], Any], timeout_seconds: float, name: str = "clues-flush") -> bool:
    """Run ``action`` in a daemon thread; give up waiting after ``timeout_seconds``. True if it ended in time."""
    thread = threading.Thread(target=action, name=name, daemon=True)
    thread.start()
    thread.join(timeout_seconds)
    return not thread.is_alive()


class TimeLimitedCaller:
    def __init__(self, place: Place, timeout: float) -> None:
        if type(place) is not Place:
            raise TypeError(f"TimeLimitedCaller needs a Place, not {type(place).__name__} {place!r}")
        self.place = place
        self.timeout = timeout
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[_Call] | None = None
        self._pid: int | None = None
        self._abandoned = 0

    @property
    def disabled(self) -> bool:
        return self._abandoned >= MAX_ABANDONED_THREADS

    def call(self, func: Callable[..., Any], *args: Any) -> bool:
        """Run ``func(*args)``; True when it returned in time without raising."""
        if self.disabled:
            return False
        call = _Call(func, args)
        self._inbox_for_this_process().put(call)
        if not call.done.wait(self.timeout):
            self._abandon()
            return False
        if call.error is not None:
            errors.record(self.place, call.error)
            return False
        return True

    def _inbox_for_this_process(self) -> queue.SimpleQueue[_Call]:
        with self._lock:
            if self._inbox is None or self._pid != os.getpid():  # threads do not survive fork
                self._inbox = queue.SimpleQueue()
                self._pid = os.getpid()
                threading.Thread(
                    target=self._serve, args=(self._inbox,), name=f"clues {self.place.value}", daemon=True
                ).start()
            return self._inbox

    def _abandon(self) -> None:
        with self._lock:
            self._inbox = None  # the stuck thread keeps its inbox; the next call starts a new one
            self._abandoned += 1
            switched_off = self.disabled
        message = f"{self.place.value} did not return within {self.timeout}s"
        if switched_off:
            message += f"; switched off after {MAX_ABANDONED_THREADS} such calls"
        errors.record(self.place, CallTimedOut(message))

    @staticmethod
    def _serve(inbox: queue.SimpleQueue[_Call]) -> None:
        while True:
            call = inbox.get()
            try:
                call.context.run(call.func, *call.args)
            except BaseException as exc:
                call.error = exc
            finally:
                call.done.set()
