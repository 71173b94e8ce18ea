"""``CompositePublisher``: fan each event out to several publishers."""

from __future__ import annotations

import time

from opentelemetry_instrumentation_clues.legacy.publishers.base import EventPublisher
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors

__all__ = ["CompositePublisher"]


class CompositePublisher:
    """Publishes every event to each child, in order.

    A child that raises does not stop the others; its error is recorded in
    ``safety.errors`` (``legacy.publisher``, ``legacy.flush``, ``legacy.close``) with that
    child named in the message: it is logged once per child and exception type, then only counted.
    """

    def __init__(self, *publishers: EventPublisher) -> None:
        self._children: list[EventPublisher] = list(publishers)

    @property
    def publishers(self) -> tuple[EventPublisher, ...]:
        return tuple(self._children)

    def add(self, publisher: EventPublisher) -> CompositePublisher:
        """Add a child (the seed's ``<<``); returns ``self`` so calls chain."""
        self._children = [*self._children, publisher]  # copy-on-write: publish() may be iterating
        return self

    def publish(self, line: str) -> None:
        for child in self._children:
            try:
                child.publish(line)
            except Exception as exc:
                errors.record(Place.LEGACY_PUBLISHER, exc, _child(child))

    def flush(self, timeout: float | None = None) -> bool:
        """Flush every child that can; the children share one ``timeout`` budget."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for child in self._children:
            flush = getattr(child, "flush", None)
            if flush is None:
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ok = flush(remaining) is not False and ok
            except Exception as exc:
                errors.record(Place.LEGACY_FLUSH, exc, _child(child))
                ok = False
        return ok

    def close(self) -> None:
        for child in self._children:
            close = getattr(child, "close", None)
            if close is None:
                continue
            try:
                close()
            except Exception as exc:
                errors.record(Place.LEGACY_CLOSE, exc, _child(child))

    def __repr__(self) -> str:
        return f"CompositePublisher({', '.join(map(repr, self._children))})"


def _child(child: object) -> str:
    # The child's identity (the log message's detail), so each broken child is logged once, not once per event.
    return f"CompositePublisher child {type(child).__qualname__}@{id(child):#x}"
