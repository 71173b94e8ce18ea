"""The publisher protocol, shared by every clues publisher.

A publisher receives already-marshalled events, one per call, each a single line *without*
its trailing newline; the publisher adds whatever framing its transport needs. Publishers
must never raise into the caller (they run inside RQ's enqueue and job paths): their own
failures go to :data:`opentelemetry_instrumentation_clues.runtime.safety.errors`.

Besides ``publish``, clues calls these optional methods when a publisher has them:

``flush(timeout: float | None = None) -> bool``
    Push out anything buffered, waiting at most ``timeout`` seconds; ``True`` when nothing
    is left. Called before an RQ work horse leaves with ``os._exit``.
``close() -> None``
    Flush (bounded) and release files, sockets and threads. Called on shutdown/uninstrument.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["EventPublisher", "encode_line"]


@runtime_checkable
class EventPublisher(Protocol):
    """Anything with ``publish(line)``; ``flush``/``close`` are optional (see module docs)."""

    def publish(self, line: str) -> None: ...


def encode_line(line: str | bytes) -> bytes:
    """``line`` as UTF-8 bytes ending in exactly one ``\\n``.

    A trailing newline from a custom (seed-style) marshaller is not doubled. Lone
    surrogates become ``\\udXXX`` escapes, which is still valid inside a JSON string,
    instead of failing the encode.
    """
    data = line if isinstance(line, bytes) else line.encode("utf-8", "backslashreplace")
    return data if data.endswith(b"\n") else data + b"\n"
