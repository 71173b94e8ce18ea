"""Enqueue a realistic mix of RQ jobs: fast, slow, failing, retried and scheduled ones.

``python -m opentelemetry_instrumentation_clues.demo.producer`` is the compose stack's producer: run
under ``opentelemetry-instrument`` (it calls nothing from OpenTelemetry itself), it enqueues the mix
into the queues ``default`` and ``slow`` on ``REDIS_URL`` (default ``redis://redis:6379/0``) at a
modest rate until SIGTERM or Ctrl-C. ``--once`` enqueues ``--jobs N`` jobs and exits (``clues demo``
and the tests use it).

The mix repeats every ten jobs (the first six have one of each kind):

=========  =====================================  =======  =========================================
kind       job (in ``demo.jobs``)                 queue    what happens
=========  =====================================  =======  =========================================
fast       ``resize_image(image_id, width)``      default  succeeds in 10-70 ms
retried    ``sync_inventory(sku)``                slow     ``Retry(max=2)``: fails twice, then succeeds
failing    ``charge_card(order_id, amount)``      default  raises ``PaymentDeclined``
scheduled  ``send_reminder(user_id)``             default  ``enqueue_in`` 2-4 s, then succeeds
slow       ``build_report(report_id, rows=…)``    slow     succeeds in 0.3-0.6 s
kwargs     ``send_email(to=…, template=…)``       default  succeeds; called with keyword arguments
=========  =====================================  =======  =========================================
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

QUEUES = ("default", "slow")
DEFAULT_REDIS_URL = "redis://redis:6379/0"
_JOBS = "opentelemetry_instrumentation_clues.demo.jobs."

FAST, RETRIED, FAILING, SCHEDULED, SLOW, KWARGS = "fast", "retried", "failing", "scheduled", "slow", "kwargs"
KINDS = (FAST, RETRIED, FAILING, SCHEDULED, SLOW, KWARGS)
_CYCLE = (FAST, RETRIED, FAILING, SCHEDULED, SLOW, KWARGS, FAST, SLOW, FAST, FAST)

#: Retry(max=2) on the retried job: three attempts in all.
RETRY_MAX = 2

#: Legacy events each kind of job writes: enqueued (scheduled jobs: scheduled, then enqueued by
#: the scheduler), then dequeued, perform_started, perform_finished/failed per attempt; a retried
#: job is enqueued again after each failed attempt that rq retries.
EVENTS_PER_JOB = {
    FAST: 4,
    SLOW: 4,
    KWARGS: 4,
    FAILING: 4,
    SCHEDULED: 5,
    RETRIED: 1 + 3 * (RETRY_MAX + 1) + RETRY_MAX,
}


@dataclass(frozen=True)
class DemoJob:
    kind: str
    queue: str
    func: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    delay_seconds: float | None = None  # enqueue_in
    retry: bool = False


def demo_job(index: int) -> DemoJob:
    """The ``index``-th job of the mix (deterministic)."""
    kind = _CYCLE[index % len(_CYCLE)]
    n = index + 1
    if kind == FAST:
        return DemoJob(kind, "default", _JOBS + "resize_image", (1000 + n, (320, 640, 1280)[n % 3]))
    if kind == RETRIED:
        return DemoJob(kind, "slow", _JOBS + "sync_inventory", (f"SKU-{n:04d}",), retry=True)
    if kind == FAILING:
        return DemoJob(kind, "default", _JOBS + "charge_card", (5000 + n, 1999 + 100 * (n % 5)))
    if kind == SCHEDULED:
        return DemoJob(kind, "default", _JOBS + "send_reminder", (n,), delay_seconds=2.0 + n % 3)
    if kind == SLOW:
        return DemoJob(kind, "slow", _JOBS + "build_report", (n,), {"rows": 100 * n})
    return DemoJob(kind, "default", _JOBS + "send_email", (), {"to": f"user{n}@example.com", "template": "receipt"})


def plan(count: int, start: int = 0) -> list[DemoJob]:
    return [demo_job(i) for i in range(start, start + count)]


def expected_events(jobs: Sequence[DemoJob]) -> int:
    return sum(EVENTS_PER_JOB[job.kind] for job in jobs)


def enqueue(queues: dict[str, Any], job: DemoJob) -> Any:
    """Enqueue one demo job on ``queues[job.queue]`` (rq ``Queue`` objects); return the rq Job."""
    from rq import Retry

    queue = queues[job.queue]
    options: dict[str, Any] = {"retry": Retry(max=RETRY_MAX)} if job.retry else {}
    if job.delay_seconds is not None:
        return queue.enqueue_in(timedelta(seconds=job.delay_seconds), job.func, *job.args, **job.kwargs, **options)
    return queue.enqueue(job.func, *job.args, **job.kwargs, **options)


def make_queues(redis_url: str) -> dict[str, Any]:
    from redis import Redis
    from rq import Queue

    connection = Redis.from_url(redis_url)
    return {name: Queue(name, connection=connection) for name in QUEUES}


def enqueue_plan(redis_url: str, jobs: Sequence[DemoJob]) -> list[str]:
    """Enqueue ``jobs``; return their rq job ids."""
    queues = make_queues(redis_url)
    return [enqueue(queues, job).id for job in jobs]


def _run_forever(redis_url: str, rate: float, stop: threading.Event) -> int:
    from redis.exceptions import RedisError

    queues = make_queues(redis_url)
    index = 0
    backoff = 1.0
    print(f"demo_producer: enqueueing {rate:g} job(s)/s into {' and '.join(QUEUES)} on {redis_url}", flush=True)
    while not stop.is_set():
        try:
            enqueue(queues, demo_job(index))
        except RedisError as exc:  # Redis not up yet, or restarting: wait and try again
            print(f"demo_producer: {type(exc).__name__}: {exc}; retrying in {backoff:g}s", file=sys.stderr, flush=True)
            stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)
            continue
        backoff = 1.0
        index += 1
        if index % 100 == 0:
            print(f"demo_producer: {index} jobs enqueued", flush=True)
        stop.wait(1.0 / rate)
    print(f"demo_producer: stopped after {index} jobs", flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m opentelemetry_instrumentation_clues.demo.producer",
        description="Enqueue a realistic mix of RQ jobs (fast, slow, failing, retried, scheduled) into the "
        "queues default and slow, until SIGTERM; run it under opentelemetry-instrument.",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
        help=f"Redis to enqueue into (default: $REDIS_URL, else {DEFAULT_REDIS_URL})",
    )
    parser.add_argument("--rate", type=float, default=2.0, help="jobs per second (default: 2)")
    parser.add_argument("--once", action="store_true", help="enqueue --jobs jobs, then exit")
    parser.add_argument("--jobs", type=int, default=10, help="how many jobs --once enqueues (default: 10)")
    parser.add_argument("--print-ids", action="store_true", help="with --once: print each job's id on a line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rate <= 0 or args.jobs < 1:
        print("demo_producer: --rate and --jobs must be positive", file=sys.stderr)
        return 2
    if args.once:
        ids = enqueue_plan(args.redis_url, plan(args.jobs))
        if args.print_ids:
            print("\n".join(ids), flush=True)
        else:
            print(f"demo_producer: enqueued {len(ids)} jobs", flush=True)
        return 0
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return _run_forever(args.redis_url, args.rate, stop)


if __name__ == "__main__":
    sys.exit(main())
