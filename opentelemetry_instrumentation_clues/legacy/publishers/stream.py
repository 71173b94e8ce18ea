"""Publishers writing to a text stream: ``StreamPublisher(stream)`` and ``StandardOutPublisher()``."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from opentelemetry_instrumentation_clues.legacy.publishers import _forksafe
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors

__all__ = ["StandardOutPublisher", "StreamPublisher"]


class StreamPublisher:
    """Writes one line per event to a text stream and flushes it.

    The flush after every line is deliberate: RQ work horses leave with ``os._exit``,
    which discards whatever sits in a Python stream buffer.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()  # one write+flush at a time keeps lines whole across threads
        _forksafe.register(self)

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()  # another thread may have held it at fork time

    def _target(self) -> TextIO:
        return self._stream

    def publish(self, line: str) -> None:
        try:
            text = line if line.endswith("\n") else line + "\n"
            stream = self._target()
            with self._lock:
                stream.write(text)
                stream.flush()
        except Exception as exc:
            errors.record(Place.LEGACY_PUBLISHER, exc, type(self).__name__)

    def flush(self, timeout: float | None = None) -> bool:
        try:
            self._target().flush()
            return True
        except Exception as exc:
            errors.record(Place.LEGACY_FLUSH, exc, type(self).__name__)
            return False


class StandardOutPublisher(StreamPublisher):
    """Writes one line per event to ``sys.stdout`` (looked up at each publish, so redirection works)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    def _target(self) -> TextIO:
        return sys.stdout
