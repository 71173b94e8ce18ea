"""Read legacy clues JSON-line event logs, one event at a time.

The legacy line format (docs/design.md, "The legacy output") is one JSON object per line::

    {"event_type":"dequeued","timestamp":"2013-06-04T20:59:58Z","queue":"q",
     "metadata":{"event_hash":"…","hostname":"h","process":1,"time_in_queue":0.52},
     "worker_class":"tests.jobs.add","args":[1,2]}

Everything here streams: inputs are read line by line (plain files, ``.gz`` files —
recognised by their magic bytes, whatever their name — and ``-`` for stdin), so
memory does not grow with the size of the input. A line that is not a valid event
(bad JSON, a missing key, a value of the wrong type, an over-long line) is counted
in a :class:`Malformed` tally and skipped; it is never fatal.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import IO, Any, cast

from opentelemetry_instrumentation_clues.environment_variables import (
    CLUES_PROGRESS_DELAY_OLD_NAME,
    OTEL_PYTHON_CLUES_PROGRESS_DELAY,
)
from opentelemetry_instrumentation_clues.event_types import EVENT_TYPES, TERMINAL_EVENT_TYPES

# What clues publishes, from the one definition in event_types.py (so a new event type reaches the CLI).
KNOWN_EVENT_TYPES = EVENT_TYPES

#: Longest line accepted; longer lines are skipped (and counted) without being held in memory.
MAX_LINE_BYTES = 8 * 1024 * 1024

_GZIP_MAGIC = b"\x1f\x8b"


class InputError(Exception):
    """An input cannot be opened or read (a user error: reported without a traceback)."""


@dataclass(frozen=True)
class Event:
    """One valid lifecycle event. ``line`` is the raw JSON line (without newline)."""

    event_type: str
    timestamp: datetime
    timestamp_text: str
    queue: str
    worker_class: str
    args: list[Any]
    metadata: dict[str, Any]
    line: str
    source: str = "-"
    lineno: int = 0

    @property
    def event_hash(self) -> str:
        return str(self.metadata["event_hash"])

    @property
    def hostname(self) -> str:
        return str(self.metadata["hostname"])

    @property
    def process(self) -> int:
        return int(self.metadata["process"])

    @property
    def time_in_queue(self) -> float | None:
        value = self.metadata.get("time_in_queue")
        return float(value) if self.event_type == "dequeued" and value is not None else None

    @property
    def time_to_perform(self) -> float | None:
        value = self.metadata.get("time_to_perform")
        return float(value) if self.event_type in TERMINAL_EVENT_TYPES and value is not None else None

    @property
    def attempt(self) -> int | None:
        value = self.metadata.get("attempt")
        return value if isinstance(value, int) else None


@dataclass
class Malformed:
    """Tally of skipped lines: total, per reason, and the first few locations."""

    max_examples: int = 5
    count: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def add(self, reason: str, source: str, lineno: int) -> None:
        self.count += 1
        self.by_reason[reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{source}:{lineno}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "by_reason": dict(self.by_reason), "examples": list(self.examples)}

    def summary(self, prog: str = "clues") -> str:
        """The stderr summary ("" when nothing was skipped)."""
        if not self.count:
            return ""
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self.by_reason.most_common())
        lines = [f"{prog}: skipped {self.count} malformed line(s) ({reasons})"]
        lines += [f"  {example}" for example in self.examples]
        if self.count > len(self.examples):
            lines.append(f"  … and {self.count - len(self.examples)} more")
        return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


def parse_timestamp(text: str) -> datetime:
    """Parse the seed's ISO-8601 UTC timestamp (``2013-06-04T20:59:58Z``; fractions and offsets allowed)."""
    if not _TS_RE.match(text):
        raise ValueError(text)
    parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return parsed.astimezone(timezone.utc)


def parse_event(line: str, source: str = "-", lineno: int = 0) -> Event | str:
    """Return the :class:`Event` on ``line``, or the reason (a short string) it is malformed."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return "invalid JSON"
    if not isinstance(obj, dict):
        return "not a JSON object"
    for key in ("event_type", "timestamp", "queue", "metadata", "worker_class", "args"):
        if key not in obj:
            return f"missing {key}"
    event_type, ts, queue, metadata = obj["event_type"], obj["timestamp"], obj["queue"], obj["metadata"]
    if not isinstance(event_type, str) or not event_type:
        return "bad event_type"
    if not isinstance(ts, str):
        return "bad timestamp"
    try:
        timestamp = parse_timestamp(ts)
    except ValueError:
        return "bad timestamp"
    if not isinstance(queue, str):
        return "bad queue"
    if not isinstance(obj["worker_class"], str):
        return "bad worker_class"
    if not isinstance(obj["args"], list):
        return "bad args"
    if not isinstance(metadata, dict):
        return "bad metadata"
    for key in ("event_hash", "hostname", "process"):
        if key not in metadata:
            return f"missing metadata.{key}"
    if not isinstance(metadata["event_hash"], str) or not metadata["event_hash"]:
        return "bad metadata.event_hash"
    if not isinstance(metadata["hostname"], str):
        return "bad metadata.hostname"
    if not isinstance(metadata["process"], int) or isinstance(metadata["process"], bool):
        return "bad metadata.process"
    if "attempt" in metadata and (not isinstance(metadata["attempt"], int) or isinstance(metadata["attempt"], bool)):
        return "bad metadata.attempt"
    required_duration = {"dequeued": "time_in_queue", "perform_finished": "time_to_perform"}
    required_duration["failed"] = "time_to_perform"
    duration_key = required_duration.get(event_type)
    if duration_key is not None:
        if duration_key not in metadata:
            return f"missing metadata.{duration_key}"
        if not _is_number(metadata[duration_key]) or metadata[duration_key] < 0:
            return f"bad metadata.{duration_key}"
    if event_type == "failed":
        for key in ("exception", "message", "backtrace"):
            if key not in metadata:
                return f"missing metadata.{key}"
        if not isinstance(metadata["exception"], str):
            return "bad metadata.exception"
        if not isinstance(metadata["message"], str):
            return "bad metadata.message"
        backtrace = metadata["backtrace"]
        if not isinstance(backtrace, list) or not all(isinstance(item, str) for item in backtrace):
            return "bad metadata.backtrace"
    return Event(
        event_type=event_type,
        timestamp=timestamp,
        timestamp_text=ts,
        queue=queue,
        worker_class=obj["worker_class"],
        args=obj["args"],
        metadata=metadata,
        line=line,
        source=source,
        lineno=lineno,
    )


def open_input(path: str) -> IO[bytes]:
    """Open ``path`` (``-`` is stdin) for binary reading, decompressing gzip transparently."""
    try:
        raw: Any = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - caller closes
    except OSError as exc:
        raise InputError(f"cannot open {path}: {exc.strerror or exc}") from exc
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw)
    head = raw.peek(2)[:2]
    if head == _GZIP_MAGIC:
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode="rb"))
    return cast(IO[bytes], raw)


class Progress:
    """A one-line progress indicator on stderr, shown only when stderr is a TTY.

    It stays silent for the first ``delay`` seconds, so small inputs never show it.
    """

    def __init__(self, total_bytes: int | None, stream: IO[str] | None = None, delay: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total_bytes
        self.start = time.monotonic()
        if delay is None:  # OTEL_PYTHON_CLUES_PROGRESS_DELAY: seconds before the indicator appears (tests set 0)
            try:
                delay = float(
                    os.environ.get(
                        OTEL_PYTHON_CLUES_PROGRESS_DELAY, os.environ.get(CLUES_PROGRESS_DELAY_OLD_NAME, "0.5")
                    )
                )
            except ValueError:
                delay = 0.5
        self.delay = delay
        self.last = 0.0
        self.shown = False

    def update(self, done_bytes: int, lines: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < self.delay or now - self.last < 0.2:
            return
        self.last = now
        mib = done_bytes / 1048576
        if self.total:
            pct = min(100.0, 100.0 * done_bytes / self.total)
            text = f"clues: {pct:5.1f}% {mib:,.0f}/{self.total / 1048576:,.0f} MiB, {lines:,} lines"
        else:
            text = f"clues: {mib:,.0f} MiB, {lines:,} lines"
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _read_lines(stream: IO[bytes]) -> Iterator[bytes | None]:
    """Yield lines (without line ending); ``None`` for a line over MAX_LINE_BYTES (its rest is skipped)."""
    while True:
        chunk = stream.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(MAX_LINE_BYTES)
            yield None
            continue
        yield chunk.rstrip(b"\r\n")


def _raw_position(stream: IO[bytes]) -> int | None:
    """Bytes consumed from the underlying file (compressed bytes for gzip)."""
    inner: Any = getattr(stream, "fileobj", None) or stream
    try:
        return int(inner.tell())
    except (OSError, ValueError, AttributeError):
        return None


def iter_events(
    paths: Iterable[str],
    malformed: Malformed,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Event]:
    """Yield the valid events of each input in turn, counting malformed lines in ``malformed``.

    ``progress(bytes_done, lines_done)`` is called now and then (bytes across all inputs).
    Raises :class:`InputError` when an input cannot be opened or read.
    """
    done_before = 0
    lines = 0
    for path in paths:
        consumed = 0  # fallback when the input cannot tell its position (a pipe)
        source = "<stdin>" if path == "-" else path
        stream = open_input(path)
        try:
            lineno = 0
            try:
                for raw in _read_lines(stream):
                    lineno += 1
                    lines += 1
                    if progress is not None:
                        consumed += MAX_LINE_BYTES if raw is None else len(raw) + 1
                        if lineno % 4096 == 0:
                            position = _raw_position(stream)
                            progress(done_before + (consumed if position is None else position), lines)
                    if raw is None:
                        malformed.add("line too long", source, lineno)
                        continue
                    if not raw.strip():
                        continue
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        malformed.add("not UTF-8", source, lineno)
                        continue
                    parsed = parse_event(text, source, lineno)
                    if isinstance(parsed, str):
                        malformed.add(parsed, source, lineno)
                    else:
                        yield parsed
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise InputError(f"cannot read {source}: {exc}") from exc
            position = _raw_position(stream)
            done_before += consumed if position is None else position
        finally:
            if path != "-":
                stream.close()


def check_inputs(paths: Iterable[str]) -> None:
    """Fail early (:class:`InputError`) if an input file is missing, a directory or unreadable."""
    for path in paths:
        if path == "-":
            continue
        if os.path.isdir(path):
            raise InputError(f"cannot open {path}: is a directory")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"cannot open {path}: {exc.strerror or exc}") from exc


def total_size(paths: Iterable[str]) -> int | None:
    """Sum of the sizes of regular-file inputs, or None if one is stdin or not a regular file."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        try:
            st = os.stat(path)
        except OSError:
            return None
        total += st.st_size
    return total


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``500ms``, ``2s``, ``1.5m``, ``1h`` or a bare number of seconds -> seconds (float)."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"invalid duration {text!r} (examples: 500ms, 2s, 1.5m, 1h)")
    return float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]


def format_duration(seconds: float | None) -> str:
    """A short human rendering: ``0``, ``850µs``, ``120ms``, ``1.52s``, ``2.5m``, ``1.2h``."""
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1000:.3g}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    if seconds < 3600:
        return f"{seconds / 60:.3g}m"
    return f"{seconds / 3600:.3g}h"
