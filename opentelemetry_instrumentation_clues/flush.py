"""Flush buffered telemetry before a work horse ends with ``os._exit``.

``os._exit`` skips atexit, so whatever the SDK's batch processors hold in a
forked work horse would be lost. Only the horse flushes: a long-lived process
(SimpleWorker, the worker parent) lets its batch processors export in the
background, so jobs never wait on an export there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .safety import guarded


def flush_all(providers: list[Callable[[], Any]], timeout_millis: int) -> None:
    """Force-flush each provider that has ``force_flush`` (API-only no-ops do not)."""
    for get_provider in providers:
        with guarded("flushing telemetry in the work horse"):
            force_flush = getattr(get_provider(), "force_flush", None)
            if force_flush is not None:
                force_flush(timeout_millis)
