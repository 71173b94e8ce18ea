"""The least the OTel SDK costs per enqueue for what DESIGN §3 asks, against the enqueue budget.

    python benchmarks/sdk_floor.py [--jobs 3000] [--rounds 5] [--redis-url URL] [--db 13]

DESIGN §3 asks every enqueue for a PRODUCER span with the job's attributes, a span
event and a log record with the event's fields, and the trace context injected into
``job.meta``. This script times exactly those SDK calls, with nothing of clues around
them (batch processors, exporters that drop everything, as in the ``clues-drop``
variant), alone and in the same loop as a plain ``Queue.enqueue`` against Redis
(where clues makes them, so with the caches rq and redis-py leave behind), and prints
them beside the budget the enqueue target leaves: ``plain / 0.90 - plain``. When
the SDK calls alone cost more than the budget, no implementation on this SDK can meet
the target while writing that telemetry in line. A report, never a test.
"""

from __future__ import annotations

import argparse
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
from rq import Queue

from benchmarks import variants
from benchmarks.jobs import add
from benchmarks.throughput import with_db

TARGET = 0.90
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


def per_call_us(action: Callable[[], None], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        action()
    variants.flush_telemetry()
    return (time.perf_counter() - start) / count * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
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
    plain_us, alone_us, beside_us = (statistics.median(timings[k]) for k in ("plain", "alone", "beside"))

    def spread(key: str) -> str:
        return f"[{min(timings[key]):.1f}-{max(timings[key]):.1f}]"

    command = f"python benchmarks/sdk_floor.py --jobs {opts.jobs} --rounds {opts.rounds}"
    print(f"# {command}; medians of {opts.rounds} rounds")
    print(f"plain enqueue                               {plain_us:7.1f} us  {spread('plain')}")
    print(f"budget the target leaves (enqueue >= {TARGET:.2f})  {plain_us / TARGET - plain_us:7.1f} us")
    print(f"SDK calls DESIGN §3 asks for, alone         {alone_us:7.1f} us  {spread('alone')}")
    print(f"enqueue + those SDK calls, in one loop      {beside_us:7.1f} us  {spread('beside')}")
    print(f"  -> the SDK calls cost beside an enqueue   {beside_us - plain_us:7.1f} us")
    best = plain_us / beside_us
    print(f"best possible enqueue ratio                 {best:7.2f}  (SDK calls only, nothing of clues)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
