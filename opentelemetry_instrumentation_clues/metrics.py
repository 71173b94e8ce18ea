"""Job metrics, correct under the forking worker.

A forked work horse inherits its parent's cumulative metric state, and it ends
with ``os._exit``: what it records itself is either lost or, if exported, a
stale copy of the parent's series. So the horse never records: it sends its
measurements to the worker parent through a pipe opened before the fork, and the
long-lived parent records them once the horse has exited. The parent records
what happens in it directly (dequeue, a horse killed or stopped), and so does a
SimpleWorker or a producer. No Redis round trip is involved.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from opentelemetry.metrics import Meter
from opentelemetry.util.types import AttributeValue

from .safety import errors, guarded

# Seconds, from a few milliseconds to two hours: queue waits and job run times both span that.
DURATION_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
)  # fmt: skip

SENT = "messaging.client.sent.messages"
CONSUMED = "messaging.client.consumed.messages"
PROCESS_DURATION = "messaging.process.duration"
TIME_IN_QUEUE = "rq.job.time_in_queue"
OUTCOME = "clues.outcome"  # success | failure | retried

MAX_BUFFERED = 256  # per horse; a job that enqueues thousands of others is still bounded


class TooManyMeasurements(RuntimeError):
    pass


class JobMetrics:
    def __init__(self, meter: Meter) -> None:
        self._counters = {
            SENT: meter.create_counter(SENT, unit="{message}", description="Jobs enqueued or scheduled"),
            CONSUMED: meter.create_counter(
                CONSUMED, unit="{message}", description="Job attempts that ended, by clues.outcome"
            ),
        }
        self._histograms = {
            PROCESS_DURATION: meter.create_histogram(
                PROCESS_DURATION,
                unit="s",
                description="Time from perform start to its end (time_to_perform)",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            ),
            TIME_IN_QUEUE: meter.create_histogram(
                TIME_IN_QUEUE,
                unit="s",
                description="Time from enqueue to dequeue",
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            ),
        }

    def record(self, name: str, value: float, attributes: dict[str, AttributeValue]) -> None:
        if name in self._counters:
            self._counters[name].add(value, attributes)
        else:
            self._histograms[name].record(value, attributes)


class MeasurementRouter:
    """Records directly, or — inside a forked work horse — buffers for the parent."""

    def __init__(self, metrics: JobMetrics) -> None:
        self.metrics = metrics
        self._horse_pid: int | None = None
        self._horse_fd: int | None = None
        self._buffer: list[tuple[str, float, dict[str, AttributeValue]]] = []

    def record(self, name: str, value: float, attributes: dict[str, AttributeValue]) -> None:
        with guarded("recording a metric"):
            if self._horse_pid == os.getpid():
                if len(self._buffer) >= MAX_BUFFERED:
                    raise TooManyMeasurements(f"more than {MAX_BUFFERED} measurements in one work horse")
                self._buffer.append((name, value, attributes))
            else:
                self.metrics.record(name, value, attributes)

    # In the work horse ---------------------------------------------------------
    def enter_horse(self, write_fd: int) -> None:
        self._horse_pid, self._horse_fd, self._buffer = os.getpid(), write_fd, []
        errors.hold_back()  # the worker logs them, once

    def leave_horse(self, report: dict[str, Any]) -> None:
        """Hand the horse's measurements and ``report`` to the parent (one non-blocking write)."""
        if self._horse_pid != os.getpid() or self._horse_fd is None:
            return
        payload = {"measurements": self._buffer, "report": report, "errors": errors.take_held()}
        self._buffer = []
        with guarded("sending metrics to the worker"):
            data = (json.dumps(payload, separators=(",", ":")) + "\n").encode()
            os.set_blocking(self._horse_fd, False)
            os.write(self._horse_fd, data)

    # In the worker parent ------------------------------------------------------
    def replay(self, read_fd: int) -> dict[str, Any]:
        """Record what a finished horse sent and return its report; never blocks."""
        report: dict[str, Any] = {}
        with guarded("receiving metrics from the work horse"):
            os.set_blocking(read_fd, False)
            chunks = []
            while True:
                try:
                    chunk = os.read(read_fd, 65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            for line in b"".join(chunks).splitlines():
                payload = json.loads(line)
                for name, value, attributes in payload["measurements"]:
                    self.metrics.record(name, value, attributes)
                report.update(payload["report"])
                errors.record_from_horse(payload.get("errors") or {})
        return report


class HorsePipe:
    """The pipe between one work horse and its parent.

    Each end is closed at most once: a closed descriptor number is soon reused
    (by a log file, a socket), and closing it twice would close that instead.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()

    def parent_side(self) -> None:
        """After the fork, in the parent: the horse holds its own copy; EOF comes when it exits."""
        self.write_fd = _close(self.write_fd)

    def close(self) -> None:
        self.read_fd = _close(self.read_fd)
        self.write_fd = _close(self.write_fd)


def _close(fd: int) -> int:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
    return -1


class _DroppingMetricExporter:
    def export(self, *args: Any, **kwargs: Any) -> Any:
        from opentelemetry.sdk.metrics.export import MetricExportResult

        return MetricExportResult.SUCCESS

    def force_flush(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def shutdown(self, *args: Any, **kwargs: Any) -> None:
        return None


def silence_inherited_readers(meter_provider: Any) -> None:
    """In a forked horse, stop periodic readers from exporting the parent's state copy."""
    config = getattr(meter_provider, "_sdk_config", None)
    for reader in getattr(config, "metric_readers", ()) or ():
        if hasattr(reader, "_exporter") and hasattr(reader, "_ticker"):
            reader._exporter = _DroppingMetricExporter()
