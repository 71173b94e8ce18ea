"""The least the OTel SDK costs for what clues does per job, against the budgets the targets leave.

    python benchmarks/sdk_floor.py [--jobs 3000] [--worker-jobs 1000] [--rounds 5] [--redis-url URL] [--db 13]

clues makes, for every enqueue, a PRODUCER span with the job's attributes, a span
event and a log record with the event's fields, and the trace context injected into
``job.meta``. This script times exactly those SDK calls, with nothing of clues around
them (batch processors, exporters that drop everything, as in the ``clues-drop``
variant), alone and in the same loop as a plain ``Queue.enqueue`` against Redis
(where clues makes them, so with the caches rq and redis-py leave behind), and prints
them beside the budget the enqueue target leaves: ``plain / 0.90 - plain``. When
the SDK calls alone cost more than the budget, no implementation on this SDK can meet
the target while writing that telemetry in line.

The same for a SimpleWorker: per job a worker makes a CONSUMER span under the
extracted context and three events (dequeued, perform_started, perform_finished),
each a span event and a log record. They are timed inside the job itself, which
runs in the worker's process, against the SimpleWorker target (>= 0.95).
A report, never a test.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from opentelemetry import _logs, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from rq import Queue, SimpleWorker

from benchmarks import variants
from benchmarks.jobs import add, add_beside_worker_sdk_calls
from benchmarks.throughput import with_db

TARGET = 0.90
WORKER_TARGET = 0.95
# What clues writes per enqueue, with values of the benchmark job's size.
JOB_ATTRIBUTES = {
    "messaging.operation.type": "send",
    "messaging.operation.name": "send",
    "clues.event_hash": "4bf92f3577b34da6a3ce929d0e0e4736",
    "messaging.system": "rq",
    "messaging.destination.name": "bench",
    "messaging.message.id": "9a1a3b5e-3f0c-4d43-9a38-7c1e5a0f9f11",
    "rq.job.func_name": "benchmarks.jobs.add",
    "rq.job.attempt": 0,
    "rq.job.args": "[1,1]",
    "rq.job.kwargs": "{}",
}
EVENT_ATTRIBUTES = {"clues.event_type": "enqueued", "host.name": "bench-host", "process.pid": 12345}
CARRIER = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}


def sdk_calls_per_enqueue() -> Callable[[], None]:
    tracer = trace.get_tracer("sdk-floor")
    logger = _logs.get_logger("sdk-floor")
    record_attributes = {**JOB_ATTRIBUTES, **EVENT_ATTRIBUTES}

    def once() -> None:
        now = time.time_ns()
        span = tracer.start_span("send bench", context=Context(), kind=SpanKind.PRODUCER, attributes=JOB_ATTRIBUTES)
        carrier: dict[str, str] = {}
        context = trace.set_span_in_context(span, Context())
        propagate.inject(carrier, context=context)
        span.add_event("enqueued", EVENT_ATTRIBUTES, timestamp=now)
        logger.emit(
            timestamp=now,
            observed_timestamp=now,
            context=context,
            body="rq job 9a1a3b5e enqueued (benchmarks.jobs.add on bench)",
            attributes=record_attributes,
            event_name="rq.job.enqueued",
        )
        span.end()

    return once


@functools.cache
def _tracer_and_logger() -> tuple[trace.Tracer, _logs.Logger]:
    return trace.get_tracer("sdk-floor"), _logs.get_logger("sdk-floor")  # once, as an instrumentor does


def worker_side_sdk_calls() -> None:
    """What a worker writes per job through the SDK: the process span and three events."""
    tracer, logger = _tracer_and_logger()
    parent = propagate.extract(CARRIER, context=Context())
    span = tracer.start_span("process bench", context=parent, kind=SpanKind.CONSUMER, attributes=JOB_ATTRIBUTES)
    context = trace.set_span_in_context(span, Context())
    for event_type in ("dequeued", "perform_started", "perform_finished"):
        now = time.time_ns()
        own = {**EVENT_ATTRIBUTES, "clues.event_type": event_type}
        span.add_event(event_type, own, timestamp=now)
        logger.emit(
            timestamp=now,
            observed_timestamp=now,
            context=context,
            body=f"rq job 9a1a3b5e {event_type} (benchmarks.jobs.add on bench)",
            attributes={**JOB_ATTRIBUTES, **own},
            event_name=f"rq.job.{event_type}",
        )
    span.end()


def per_call_us(action: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        action()
    variants.flush_telemetry()
    return (time.perf_counter() - start) / count * 1e6


def simple_worker_us(queue: Queue, conn: redis.Redis, job: Callable[..., int], count: int) -> float:
    """Wall microseconds per job of a SimpleWorker over ``count`` jobs of ``job`` (enqueued untimed)."""
    for i in range(count):
        queue.enqueue(job, i, 1)
    start = time.perf_counter()
    SimpleWorker([queue], connection=conn).work(burst=True, logging_level=variants.LOGGING_LEVEL)
    variants.flush_telemetry()
    return (time.perf_counter() - start) / count * 1e6


def report(
    what: str, target: float, plain: list[float], with_sdk: list[float], label: str, alone: list[float] | None = None
) -> None:
    """Print one part: the plain figure, the budget the target leaves, the SDK calls' cost, the best ratio."""

    def row(name: str, values: list[float]) -> float:
        value = statistics.median(values)
        print(f"{name:<48} {value:8.1f} us  [{min(values):.1f}-{max(values):.1f}]")
        return value

    plain_us = row(f"plain {what}", plain)
    print(f"{f'budget the target leaves ({what} >= {target:.2f})':<48} {plain_us / target - plain_us:8.1f} us")
    if alone is not None:
        row("SDK calls clues makes per job, alone", alone)
    with_sdk_us = row(label, with_sdk)
    print(f"{'  -> what the SDK calls add':<48} {with_sdk_us - plain_us:8.1f} us")
    print(f"{f'best possible {what} ratio':<48} {plain_us / with_sdk_us:8.2f}  (SDK calls only, nothing of clues)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--worker-jobs", type=int, default=1000)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379")
    parser.add_argument("--db", type=int, default=13, help="the db to use (its queue 'sdk-floor' is deleted after)")
    opts = parser.parse_args()
    url = with_db(opts.redis_url, opts.db)
    conn = redis.Redis.from_url(url)
    queue = Queue("sdk-floor", connection=conn)
    variants._global_sdk_providers(*variants._drop_exporters())
    sdk_calls = sdk_calls_per_enqueue()

    def plain_enqueue() -> None:
        queue.enqueue(add, 1, 1)

    def enqueue_and_sdk_calls() -> None:  # the SDK calls where clues makes them: beside each enqueue
        queue.enqueue(add, 1, 1)
        sdk_calls()

    timings: dict[str, list[float]] = {"plain": [], "alone": [], "beside": []}
    try:
        for _ in range(opts.rounds):  # interleaved, so drift hits all alike
            timings["plain"].append(per_call_us(plain_enqueue, opts.jobs))
            timings["alone"].append(per_call_us(sdk_calls, opts.jobs))
            timings["beside"].append(per_call_us(enqueue_and_sdk_calls, opts.jobs))
            queue.empty()
    finally:
        queue.delete(delete_jobs=True)
    command = f"python benchmarks/sdk_floor.py --jobs {opts.jobs} --worker-jobs {opts.worker_jobs}"
    print(f"# {command} --rounds {opts.rounds}; medians of {opts.rounds} rounds, [min-max]")
    report(
        "enqueue",
        TARGET,
        timings["plain"],
        timings["beside"],
        "enqueue + those SDK calls, in one loop",
        timings["alone"],
    )

    worker: dict[str, list[float]] = {"plain": [], "beside": []}
    try:
        for _ in range(opts.rounds):
            worker["plain"].append(simple_worker_us(queue, conn, add, opts.worker_jobs))
            worker["beside"].append(simple_worker_us(queue, conn, add_beside_worker_sdk_calls, opts.worker_jobs))
    finally:
        queue.delete(delete_jobs=True)
    report(
        "SimpleWorker", WORKER_TARGET, worker["plain"], worker["beside"], "SimpleWorker job + the worker's SDK calls"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
