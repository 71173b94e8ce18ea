"""``clues tail``: follow a live event log like ``tail -F``, printing the matching events.

The file is polled (standard library only, works on every OS): at end of file, the path is
``stat``-ed; a different inode/device (or an open file that has been deleted) means the file was
rotated (moved, or deleted and recreated):
what is left in the old file is read, then the new file is followed from its start; a size smaller
than the read position means it was truncated (copytruncate): it is re-read from the start. A
missing file is waited for. Partial lines (a writer mid-line) are held until their newline.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO

from opentelemetry_instrumentation_clues.cli.event_log import (
    MAX_LINE_BYTES,
    Event,
    Malformed,
    format_duration,
    parse_event,
)

_CHUNK = 64 * 1024


def _open(path: str) -> IO[bytes] | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


def follow_lines(
    path: str,
    *,
    from_start: bool = False,
    poll_interval: float = 0.25,
    should_stop: Callable[[], bool] = lambda: False,
    on_notice: Callable[[str], None] = lambda message: None,
) -> Iterator[bytes]:
    """Yield each complete line appended to ``path`` (without its newline), across rotations.

    Runs until ``should_stop()`` is true (checked between lines and at every poll) or the consumer
    stops iterating. ``on_notice`` receives human messages (file rotated, truncated, missing).
    """
    fh = _open(path)  # opened now, not at the first next(): "from the end" means from this call
    skipping = False
    if fh is None:
        on_notice(f"{path}: no such file yet; waiting for it to appear")
    elif not from_start:
        end = fh.seek(0, os.SEEK_END)
        if end > 0:
            fh.seek(end - 1)
            skipping = fh.read(1) != b"\n"  # started mid-line: its tail is not an event
    return _follow(path, fh, skipping, poll_interval, should_stop, on_notice)


def _follow(
    path: str,
    fh: IO[bytes] | None,
    skipping: bool,  # inside a line to drop (over-long, or cut by the start): skip to its newline
    poll_interval: float,
    should_stop: Callable[[], bool],
    on_notice: Callable[[str], None],
) -> Iterator[bytes]:
    buffer = b""

    def split(data: bytes) -> Iterator[bytes]:
        nonlocal buffer, skipping
        buffer += data
        while True:
            newline = buffer.find(b"\n")
            if newline < 0:
                break
            line, buffer = buffer[:newline], buffer[newline + 1 :]
            if skipping:
                skipping = False
                continue
            yield line.rstrip(b"\r")
        if len(buffer) > MAX_LINE_BYTES:
            buffer, skipping = b"", True
            yield b"\x00line too long"

    try:
        while not should_stop():
            if fh is None:
                fh = _open(path)
                if fh is None:
                    time.sleep(poll_interval)
                    continue
                on_notice(f"{path}: following the new file")
            data = fh.read(_CHUNK)
            if data:
                yield from split(data)
                continue
            try:
                current = os.stat(path)
            except FileNotFoundError:
                time.sleep(poll_interval)  # moved away, not recreated yet: the writer may still append
                continue
            opened = os.fstat(fh.fileno())
            if opened.st_nlink == 0 or not _same_file(current, opened):
                # Rotated (moved, or deleted and recreated - possibly with the same inode number):
                # finish the old file (a writer may have appended just before the move).
                while data := fh.read(_CHUNK):
                    yield from split(data)
                fh.close()
                fh, buffer, skipping = None, b"", False
                on_notice(f"{path}: file was rotated")
                continue
            if current.st_size < fh.tell():
                fh.seek(0)
                buffer, skipping = b"", False
                on_notice(f"{path}: file was truncated")
                continue
            time.sleep(poll_interval)
    finally:
        if fh is not None:
            fh.close()


@dataclass
class TailFilter:
    queues: list[str] | None = None
    event_types: list[str] | None = None
    worker_classes: list[str] | None = None

    def matches(self, event: Event) -> bool:
        return (
            (not self.queues or event.queue in self.queues)
            and (not self.event_types or event.event_type in self.event_types)
            and (not self.worker_classes or event.worker_class in self.worker_classes)
        )


def format_event(event: Event) -> str:
    """The compact one-line human rendering of an event."""
    parts = [
        event.timestamp_text,
        f"{event.event_type:<16}",
        event.queue,
        event.worker_class,
        event.event_hash,
        f"{event.hostname}:{event.process}",
    ]
    if event.attempt is not None:
        parts.append(f"attempt={event.attempt}")
    if event.time_in_queue is not None:
        parts.append(f"time_in_queue={format_duration(event.time_in_queue)}")
    if event.time_to_perform is not None:
        parts.append(f"time_to_perform={format_duration(event.time_to_perform)}")
    if event.event_type == "failed":
        parts.append(f"{event.metadata.get('exception')}: {event.metadata.get('message')}")
        if event.metadata.get("will_retry") is True:
            parts.append("(will retry)")
    parts.append(f"args={json.dumps(event.args)}")
    kwargs = event.metadata.get("kwargs")
    if kwargs:  # the legacy exporter keeps a job's keyword arguments in metadata.kwargs
        parts.append(f"kwargs={json.dumps(kwargs)}")
    return " ".join(parts)


def run_tail(
    path: str,
    event_filter: TailFilter,
    *,
    raw: bool = False,
    from_start: bool = False,
    max_events: int | None = None,
    poll_interval: float = 0.25,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    malformed: Malformed | None = None,
) -> int:
    """Print matching events until ``max_events`` were printed (or forever); return how many."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    malformed = malformed if malformed is not None else Malformed()
    printed = 0

    def notice(message: str) -> None:
        print(f"clues tail: {message}", file=err, flush=True)

    def should_stop() -> bool:
        return max_events is not None and printed >= max_events

    lineno = 0
    for line in follow_lines(
        path, from_start=from_start, poll_interval=poll_interval, should_stop=should_stop, on_notice=notice
    ):
        lineno += 1
        if not line.strip():
            continue
        if line == b"\x00line too long":
            reason: str | Event = "line too long"
        else:
            try:
                reason = parse_event(line.decode("utf-8"), path, lineno)
            except UnicodeDecodeError:
                reason = "not UTF-8"
        if isinstance(reason, str):
            malformed.add(reason, path, lineno)
            notice(f"skipped a malformed line ({reason})")
            continue
        event = reason
        if not event_filter.matches(event):
            continue
        print(event.line if raw else format_event(event), file=out, flush=True)
        printed += 1
        if should_stop():
            break
    return printed
