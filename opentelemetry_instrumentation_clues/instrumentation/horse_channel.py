"""The pipe a forked work horse reports through, and the worker reads while it waits.

The horse writes one JSON line per report as it happens (``perform_started``, the
outcome, each metric measurement, each log record clues would emit); the worker
parent reads them while it monitors the horse and publishes them itself. So a
horse never exports clues' telemetry, and a horse killed mid-job has already
handed over what happened before it died.

Neither side may ever hold a job up:

- The horse writes without blocking. The pipe is enlarged to 1 MiB where the
  kernel allows; if it is full all the same (a job that enqueues thousands of
  jobs), the horse waits for the worker to drain it, at most
  ``SEND_BUDGET_SECONDS`` over the whole job, then stops reporting (the caller
  falls back to publishing itself) and says so once.
- A line is never split between two writes that another write could come
  between: each report is written whole (looping over partial writes) before the
  next one starts, so the reader sees whole lines in order.
- The worker reads only what is there (non-blocking), keeps a partial last line
  for the next read, and decodes each line on its own: one bad line costs that
  report only.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import time
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry_instrumentation_clues.values.converter import compact_json_encoder

_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Linux), not exported by Python's fcntl before 3.10 everywhere
PIPE_BYTES = 1 << 20
SEND_BUDGET_SECONDS = 2.0  # in total per horse: how long reports may wait for room in the pipe
READ_CHUNK = 1 << 16
_encode_report = compact_json_encoder(allow_nan=True)  # a job's metadata may hold NaN


class ReportNotSent(RuntimeError):
    """The worker did not drain the pipe in time (or it is gone): the report stays in the horse."""


class HorseChannel:
    """One attempt's pipe from its forked horse to the worker.

    Each end is closed at most once: a closed descriptor number is soon reused
    (by a log file, a socket), and closing it twice would close that instead.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        with contextlib.suppress(OSError, ImportError):
            import fcntl

            fcntl.fcntl(self.write_fd, _F_SETPIPE_SZ, PIPE_BYTES)
        os.set_blocking(self.read_fd, False)
        self._pending = b""  # the worker's partial last line
        self._send_deadline: float | None = None
        self.broken = False  # in the horse: a report could not be sent; the rest is published there

    # In the horse ---------------------------------------------------------------
    def send(self, report: dict[str, Any]) -> None:
        """Write one report, whole; raises ReportNotSent when the worker does not make room in time."""
        if self.broken:
            raise ReportNotSent("an earlier report could not be sent")
        data = memoryview((_encode_report(report) + "\n").encode())
        if self._send_deadline is None:
            os.set_blocking(self.write_fd, False)
            self._send_deadline = time.monotonic() + SEND_BUDGET_SECONDS
        while data:
            try:
                data = data[os.write(self.write_fd, data) :]
            except BlockingIOError:
                self._wait_for_room()
            except OSError as exc:  # EPIPE: the worker is gone
                self.broken = True
                raise ReportNotSent(f"the worker's end of the pipe is closed ({exc})") from exc

    def _wait_for_room(self) -> None:
        assert self._send_deadline is not None
        left = self._send_deadline - time.monotonic()
        if left <= 0:
            self.broken = True
            raise ReportNotSent(f"the worker did not read the horse's reports within {SEND_BUDGET_SECONDS} s")
        poller = select.poll()
        poller.register(self.write_fd, select.POLLOUT)
        poller.poll(left * 1000)

    # In the worker ----------------------------------------------------------------
    def parent_side(self) -> None:
        """After the fork, in the parent: the horse holds its own copy of the write end."""
        self.write_fd = _close(self.write_fd)

    def receive(self) -> Iterator[dict[str, Any] | ValueError]:
        """The whole reports that have arrived, without blocking; a line that is not a
        report is yielded as the ValueError it raised."""
        chunks = [self._pending]
        while True:
            try:
                chunk = os.read(self.read_fd, READ_CHUNK)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        lines = b"".join(chunks).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            try:
                report = json.loads(line)
                if not isinstance(report, dict):
                    raise ValueError(f"a report is a JSON object, not {type(report).__name__}")
            except ValueError as exc:
                yield exc
                continue
            yield report

    def follow(self, horse_pid: int, deliver: Callable[[dict[str, Any] | ValueError], None]) -> None:
        """Deliver reports as they arrive until the horse has exited (it is not reaped here).

        Waits on the pipe and on a pidfd of the horse: a grandchild that inherited the
        write end keeps the pipe open after the horse is gone. Without pidfds (an old
        kernel), the horse is looked at every 50 ms instead."""
        pidfd = _pidfd(horse_pid)
        poller = select.poll()
        poller.register(self.read_fd, select.POLLIN)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        try:
            while True:
                ready = dict(poller.poll(None if pidfd is not None else 50))
                hung_up = bool(ready.get(self.read_fd, 0) & select.POLLHUP)
                self.drain(deliver)
                if pidfd is not None and pidfd in ready:
                    return
                if pidfd is None and _has_exited(horse_pid):
                    return
                if hung_up:  # every write end is closed: nothing more can come
                    poller.unregister(self.read_fd)
                    if pidfd is None:
                        return
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def drain(self, deliver: Callable[[dict[str, Any] | ValueError], None]) -> None:
        for report in self.receive():
            deliver(report)

    def close(self) -> None:
        self.read_fd = _close(self.read_fd)
        self.write_fd = _close(self.write_fd)


def _pidfd(pid: int) -> int | None:
    open_pidfd = getattr(os, "pidfd_open", None)
    if open_pidfd is None or pid <= 0:
        return None
    try:
        return int(open_pidfd(pid))
    except OSError:  # already reaped, or a kernel without pidfds
        return None


def _has_exited(pid: int) -> bool:
    """Whether ``pid`` has exited, leaving it for rq to reap (WNOWAIT)."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return True  # cannot look without reaping: let rq's own wait block
    try:
        return waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _close(fd: int) -> int:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
    return -1
