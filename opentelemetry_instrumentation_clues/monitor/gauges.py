"""The queue-health gauges of ``clues monitor``: observable gauges fed by one snapshot per collection.

Why observable gauges: their callbacks run only when a reader collects, so Redis is read at the
export interval (or at each Prometheus scrape), never per job, and nothing is read when nobody
collects. The three callbacks of one collection share one snapshot (:class:`SharedSnapshot`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from redis.exceptions import RedisError

from opentelemetry_instrumentation_clues.monitor.snapshot import Snapshot
from opentelemetry_instrumentation_clues.telemetry.attributes import QUEUE

QUEUE_JOBS = "rq.queue.jobs"
OLDEST_JOB_AGE = "rq.queue.oldest_job.age"
WORKERS = "rq.workers"
JOB_STATUS = "rq.job.status"
WORKER_STATE = "rq.worker.state"
GAUGES = (QUEUE_JOBS, OLDEST_JOB_AGE, WORKERS)

_log = logging.getLogger("opentelemetry_instrumentation_clues.monitor")


class SharedSnapshot:
    """Reads Redis once per collection and hands the same snapshot to every gauge of it.

    The SDK calls each gauge's callback once per collection but says nothing about where a
    collection starts, and two readers (say OTLP and a Prometheus scrape) collect independently.
    So the rule is per gauge: a gauge that asks again has started a new collection, and that
    ask reads Redis; the other gauges then get the same snapshot.

    While Redis is down the snapshot is ``None`` and the gauges report nothing (no stale values).
    The outage is logged once when it starts and once when it ends, never per collection.
    """

    def __init__(self, read: Callable[[], Snapshot], gauges: Iterable[str] = GAUGES) -> None:
        self._read = read
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._served: set[str] = set(gauges)  # all served: the first ask reads
        self._down = False
        self.reads = 0

    def for_gauge(self, gauge: str) -> Snapshot | None:
        with self._lock:
            if gauge in self._served:
                self._current = self._read_or_none()
                self._served = set()
            self._served.add(gauge)
            return self._current

    def _read_or_none(self) -> Snapshot | None:
        self.reads += 1
        try:
            snapshot = self._read()
        except (RedisError, ValueError) as exc:  # ValueError: a reply that does not parse
            if not self._down:
                self._down = True
                _log.warning("clues monitor: Redis unreachable (%s); gauges report nothing until it returns", exc)
            return None
        if self._down:
            self._down = False
            _log.warning("clues monitor: Redis reachable again; gauges report again")
        return snapshot


def register_gauges(meter: Meter, shared: SharedSnapshot) -> None:
    """Create the three observable gauges on ``meter``, reading through ``shared``."""

    def queue_jobs(options: CallbackOptions) -> Iterable[Observation]:
        snapshot = shared.for_gauge(QUEUE_JOBS)
        if snapshot is None:
            return []
        return [
            Observation(count, {QUEUE: queue.name, JOB_STATUS: status})
            for queue in snapshot.queues
            for status, count in queue.counts.items()
        ]

    def oldest_job_age(options: CallbackOptions) -> Iterable[Observation]:
        snapshot = shared.for_gauge(OLDEST_JOB_AGE)
        if snapshot is None:
            return []
        return [Observation(snapshot.oldest_job_age(queue), {QUEUE: queue.name}) for queue in snapshot.queues]

    def workers(options: CallbackOptions) -> Iterable[Observation]:
        snapshot = shared.for_gauge(WORKERS)
        if snapshot is None:
            return []
        return [
            Observation(count, {QUEUE: queue, WORKER_STATE: state})
            for (queue, state), count in snapshot.worker_counts().items()
        ]

    meter.create_observable_gauge(
        QUEUE_JOBS, [queue_jobs], unit="{job}", description="Jobs of an RQ queue by status (queue and registries)"
    )
    meter.create_observable_gauge(
        OLDEST_JOB_AGE,
        [oldest_job_age],
        unit="s",
        description="Age (since enqueued_at) of the job at the head of an RQ queue; 0 when the queue is empty",
    )
    meter.create_observable_gauge(
        WORKERS, [workers], unit="{worker}", description="RQ workers listening on a queue, by worker state"
    )


__all__ = ["GAUGES", "JOB_STATUS", "OLDEST_JOB_AGE", "QUEUE_JOBS", "WORKERS", "WORKER_STATE", "SharedSnapshot"]
