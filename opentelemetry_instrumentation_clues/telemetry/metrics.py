"""Job metrics, correct under the forking worker.

A forked work horse inherits its parent's cumulative metric state, and it ends
with ``os._exit``: what it records itself is either lost or, if exported, a
stale copy of the parent's series. So the horse never records: it forwards each
measurement to the worker as it is made (:mod:`.horse_channel`), and the
long-lived worker records it (:class:`.telemetry.Telemetry` decides which). The worker records
what happens in it directly (dequeue, a horse killed or stopped), and so does a
SimpleWorker or a producer. No Redis round trip is involved.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context
from opentelemetry.metrics import Meter
from opentelemetry.util.types import AttributeValue

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

    def record(
        self, name: str, value: float, attributes: dict[str, AttributeValue], context: Context | None = None
    ) -> None:
        """``context``: the job's span, so a histogram's exemplars point at the job's trace."""
        if name in self._counters:
            self._counters[name].add(value, attributes, context=context)
        else:
            self._histograms[name].record(value, attributes, context=context)


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
