"""``LogPublisher(path)``: one line per event appended to a file, safe for many processes."""

from __future__ import annotations

import contextlib
import os
import threading
import time

from opentelemetry_instrumentation_clues.legacy.publishers import _forksafe
from opentelemetry_instrumentation_clues.legacy.publishers.base import encode_line
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors

__all__ = ["LogPublisher"]

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


class LogPublisher:
    """Appends one line per event to ``path``.

    - Each line is written by a single ``os.write`` on an ``O_APPEND`` descriptor, so the
      worker, its forked work horses and other workers can share one file without
      interleaving or losing lines; nothing is buffered in the process, so a horse leaving
      with ``os._exit`` loses nothing.
    - The file is created with ``mode`` (``0o640``; the umask may only narrow it).
    - Log rotation: at most every ``check_interval`` seconds the path is ``stat``-ed and
      compared with the open file (device, inode); if it was renamed or deleted the file is
      reopened at ``path``. Lines written between a rename and the check land in the renamed
      file, not lost. ``copytruncate`` needs nothing: ``O_APPEND`` writes follow the new end.
      ``check_interval=0`` checks before every write; a ``stat`` costs about as much as the
      write itself (measured ~1.8 us vs ~1.2 us on ext4), hence the 0.1 s default.
    - Thread-safe and fork-safe: a forked child keeps appending through the inherited
      descriptor.

    Errors (directory missing, permission denied, disk full) are recorded in
    ``safety.errors`` and never raised; opening is retried on the next event.
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o640, check_interval: float = 0.1) -> None:
        self._path = os.fspath(path)
        self._mode = mode
        self._check_interval = check_interval
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the open file
        self._next_check = 0.0
        self._detail = f"LogPublisher({self._path})"  # names it in the log message
        _forksafe.register(self)

    @property
    def path(self) -> str:
        return self._path

    def publish(self, line: str) -> None:
        try:
            data = encode_line(line)
            with self._lock:
                fd = self._current_fd()
                written = os.write(fd, data)
                while written < len(data):  # only on disk-full style trouble; finish the line
                    written += os.write(fd, data[written:])
        except Exception as exc:
            errors.record(Place.LEGACY_PUBLISHER, exc, self._detail)

    def flush(self, timeout: float | None = None) -> bool:
        return True  # os.write leaves nothing buffered in the process

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    def _current_fd(self) -> int:
        """The descriptor to write to, reopened if the path no longer names the open file."""
        if self._fd is not None:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + self._check_interval
                try:
                    st = os.stat(self._path)
                    rotated = (st.st_dev, st.st_ino) != self._identity
                except FileNotFoundError:
                    rotated = True
                if rotated:
                    self._close_fd()
        if self._fd is None:
            fd = os.open(self._path, _OPEN_FLAGS, self._mode)
            st = os.fstat(fd)
            self._fd, self._identity = fd, (st.st_dev, st.st_ino)
            self._next_check = time.monotonic() + self._check_interval
        return self._fd

    def _close_fd(self) -> None:
        fd, self._fd, self._identity = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _after_fork_in_child(self) -> None:
        # The inherited descriptor stays valid (O_APPEND keeps lines whole across
        # processes); only the lock may have been held by a thread that is now gone.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LogPublisher({self._path!r})"
