"""Flush buffered telemetry before a work horse ends with ``os._exit``.

``os._exit`` skips atexit, so whatever the SDK's batch processors hold in a
forked work horse would be lost. Only the horse flushes: a long-lived process
(SimpleWorker, the worker parent) lets its batch processors export in the
background, so jobs never wait on an export there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .fork_safety import run_bounded
from .safety import errors, guarded


class FlushTimedOut(TimeoutError):
    """The work horse gave up waiting for its telemetry export."""


def flush_all(providers: list[Callable[[], Any]], timeout_millis: int) -> None:
    """Force-flush each provider that has ``force_flush`` (API-only no-ops do not), within the timeout."""
    deadline = time.monotonic() + timeout_millis / 1000

    def flush() -> None:
        for get_provider in providers:
            with guarded("flushing telemetry in the work horse"):
                force_flush = getattr(get_provider(), "force_flush", None)
                if force_flush is not None:
                    force_flush(max(1, int((deadline - time.monotonic()) * 1000)))

    if not run_bounded(flush, timeout_millis / 1000):
        errors.record("flushing telemetry in the work horse", FlushTimedOut(f"no flush within {timeout_millis} ms"))
