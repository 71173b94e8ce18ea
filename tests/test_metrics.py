"""Job metrics through SimpleWorker and the forking Worker, read from an in-memory reader."""

from __future__ import annotations

import time

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from rq import Queue, Retry, SimpleWorker, Worker

from opentelemetry_instrumentation_clues import CluesInstrumentor
from opentelemetry_instrumentation_clues.telemetry.metrics import DURATION_BUCKETS
from tests import jobs
from tests.metric_points import from_sdk, totals

FORBIDDEN = {"messaging.message.id", "clues.event_hash", "rq.job.args", "rq.job.kwargs"}


@pytest.fixture
def metrics_reader(captured):
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(
        tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider, meter_provider=provider
    )
    try:
        yield reader
    finally:
        instrumentor.uninstrument()
        provider.shutdown()


@pytest.mark.parametrize("worker_class", [SimpleWorker, Worker])
def test_counts_per_outcome_match_the_jobs(redis_conn, metrics_reader, worker_class):
    queue = Queue("metered", connection=redis_conn)
    for i in range(5):
        queue.enqueue(jobs.add, i, i)
    for _ in range(2):
        queue.enqueue(jobs.fail)
    queue.enqueue(jobs.fail, retry=Retry(max=2))  # 3 attempts: retried, retried, failure
    queue.enqueue(jobs.retry_until_exhausted)  # returns Retry(max=1): retried, then failure
    worker_class([queue], connection=redis_conn).work(burst=True)

    points = from_sdk(metrics_reader.get_metrics_data())
    consumed = totals(points, "messaging.client.consumed.messages", "clues.outcome")
    assert consumed == {"success": 5, "failure": 4, "retried": 3}
    assert totals(points, "messaging.process.duration", "clues.outcome") == consumed
    assert sum(totals(points, "rq.job.time_in_queue", "rq.job.func_name").values()) == 12
    sent = totals(points, "messaging.client.sent.messages", "messaging.operation.name")
    assert sent == {"send": 9 + 3}  # 9 enqueued, 3 re-enqueued for retries
    failures = totals(points, "messaging.client.consumed.messages", "error.type")
    assert failures == {None: 5, "ValueError": 5, "RetryReturned": 2}
    for (_, attributes), _point in points.items():
        assert not FORBIDDEN & {name for name, _ in attributes}
        assert dict(attributes)["messaging.system"] == "rq"


def test_a_job_held_two_seconds_lands_in_the_bucket_holding_two_seconds(redis_conn, metrics_reader):
    queue = Queue("metered", connection=redis_conn)
    queue.enqueue(jobs.add, 1, 1)
    time.sleep(2.0)  # the quantity under test: time spent in the queue
    SimpleWorker([queue], connection=redis_conn).work(burst=True)

    ((_, point),) = [
        (k, p) for k, p in from_sdk(metrics_reader.get_metrics_data()).items() if k[0] == "rq.job.time_in_queue"
    ]
    assert tuple(point.explicit_bounds) == DURATION_BUCKETS
    bucket = next(i for i, bound in enumerate(point.explicit_bounds) if bound >= 2.0)
    assert point.explicit_bounds[bucket - 1] < 2.0 <= point.explicit_bounds[bucket]
    assert point.bucket_counts[bucket] == 1 and point.count == 1
    assert 2.0 <= point.sum < 2.5
