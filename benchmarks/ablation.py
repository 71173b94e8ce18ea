"""Price single pieces of the instrumentation by switching them off or replacing them.

    python benchmarks/ablation.py [--rounds 5] [--jobs 1500] [--fork-jobs 150] [--only NAME,NAME]

Each ablation is ``clues-drop`` (or the bare SDK) with one thing monkeypatched in
its own process, so a proposed change to the package can be measured before it
is made. Same method as throughput.py: fresh process per variant, rounds
interleaved, median [min-max] of the ratio to plain RQ in the same round.
Some ablations lose telemetry on purpose (they only price a step).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import variants


def flush_inline(spec: dict[str, Any]) -> None:
    """The horse flushes in its own thread instead of a new bounded thread."""
    from opentelemetry_instrumentation_clues.runtime import flush

    def run_inline(action: Callable[[], Any], timeout_seconds: float) -> bool:
        action()
        return True

    flush.run_with_timeout = run_inline
    variants.clues_drop(spec)


def no_horse_flush(spec: dict[str, Any]) -> None:
    """LOSSY: the horse does not flush at all (prices the flush)."""
    from opentelemetry_instrumentation_clues.instrumentation import worker_hooks

    worker_hooks.flush_all = lambda providers, timeout_millis: None
    variants.clues_drop(spec)


def no_fork_reset(spec: dict[str, Any]) -> None:
    """The after-fork walk that renews HTTP sessions does nothing."""
    from opentelemetry_instrumentation_clues.runtime import fork_safety

    variants.clues_drop(spec)
    fork_safety._provider_sources[:] = []


def no_log_records(spec: dict[str, Any]) -> None:
    """LOSSY: no OTel log records, span events only (prices the log record path)."""
    import gc

    from opentelemetry_instrumentation_clues.telemetry.emitter import Telemetry

    class _NoLogger:
        def emit(self, *args: Any, **kwargs: Any) -> None:
            pass

    variants.clues_drop(spec)
    for telemetry in [o for o in gc.get_objects() if isinstance(o, Telemetry)]:
        telemetry.logger = _NoLogger()  # type: ignore[assignment]


def span_only(spec: dict[str, Any]) -> None:
    """LOSSY: spans and propagation only, no span events and no log records (the floor of a span per step)."""
    from opentelemetry_instrumentation_clues.telemetry import emitter as telemetry

    variants.clues_drop(spec)
    telemetry.Telemetry.publish = lambda self, *args, **kwargs: None  # type: ignore[method-assign]


# What a publisher process that never forks would take out of a forking worker (issue 14): the
# three steps below remove, in turn, the worker's SDK work for events, records and metrics, the
# span's end, and the span itself. The last is the upper bound of that design: the worker would
# still make the process span's ids (the horse's spans nest under them) and send its facts.
def no_events_records_metrics(spec: dict[str, Any]) -> None:
    """LOSSY: the process span only: no span events, log records or metrics anywhere."""
    from opentelemetry_instrumentation_clues.telemetry import emitter

    variants.clues_drop(spec)
    for name in ("publish", "_record", "_emit", "record_forwarded"):
        setattr(emitter.Telemetry, name, lambda *args, **kwargs: None)


def no_span_end(spec: dict[str, Any]) -> None:
    """LOSSY: as no-events-records-metrics, and no attempt's span is ever ended (nothing is exported)."""
    from opentelemetry_instrumentation_clues.instrumentation import attempts

    no_events_records_metrics(spec)
    attempts.Attempt.end_span = lambda self, end_ns=None: None  # type: ignore[method-assign]


def ids_only(spec: dict[str, Any]) -> None:
    """LOSSY: as no-events-records-metrics, and an attempt's span is a non-recording one with
    fresh ids: no SDK work for the job in the worker at all."""
    import random

    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from opentelemetry_instrumentation_clues.instrumentation import lifecycle

    no_events_records_metrics(spec)

    def ids(*args: Any, **kwargs: Any) -> NonRecordingSpan:
        context = SpanContext(random.getrandbits(128), random.getrandbits(64), False, TraceFlags(TraceFlags.SAMPLED))
        return NonRecordingSpan(context)

    lifecycle.start_continued = ids  # type: ignore[assignment]


def ids_only_unread(spec: dict[str, Any]) -> None:
    """LOSSY: as ids-only, and the worker never reads its horse's reports (the horse's pipe is
    large enough for them): what is left if horses sent their reports past the worker."""
    from opentelemetry_instrumentation_clues.instrumentation import horse_channel

    ids_only(spec)
    horse_channel.HorseChannel.follow = lambda self, horse_pid, deliver: None  # type: ignore[method-assign]
    horse_channel.HorseChannel.drain = lambda self, deliver: None  # type: ignore[method-assign]


def sdk_fork_resources(spec: dict[str, Any]) -> None:
    """A forked child re-detects its process resource through the SDK's own thread pool, as
    before runtime/fork_resources.py (prices that module)."""
    from opentelemetry_instrumentation_clues.runtime import fork_resources

    fork_resources.install = lambda: None  # type: ignore[assignment]
    variants.clues_drop(spec)


def batched(spec: dict[str, Any]) -> None:
    """The worker publishes what its attempts need (dequeued, the horses' reports, the span's end)
    in batches of 16 jobs: would fewer, larger bursts of publishing touch fewer pages per job?"""
    from opentelemetry_instrumentation_clues.instrumentation import attempts, horse_reports, lifecycle, worker_hooks

    pending: list[Callable[[], Any]] = []
    dequeues = [0]

    def drain() -> None:
        while pending:
            pending.pop(0)()

    def deferred(original: Callable[..., Any]) -> Callable[..., None]:
        return lambda *args: pending.append(lambda: original(*args))

    end_span, dequeue, work = attempts.Attempt.end_span, worker_hooks.WorkerHooks.dequeue, worker_hooks.WorkerHooks.work

    def batched_dequeue(self: Any, *args: Any) -> Any:
        dequeues[0] += 1
        if dequeues[0] % 16 == 0:
            drain()
        return dequeue(self, *args)

    def drained_work(self: Any, *args: Any) -> Any:
        try:
            return work(self, *args)
        finally:
            drain()

    lifecycle.Lifecycle.dequeued = deferred(lifecycle.Lifecycle.dequeued)  # type: ignore[method-assign]
    horse_reports.ReportReplay.deliver = deferred(horse_reports.ReportReplay.deliver)  # type: ignore[method-assign]
    attempts.Attempt.end_span = lambda self, end_ns=None: pending.append(  # type: ignore[method-assign]
        lambda: end_span(self, self.horse_done_ns)
    )
    # clues wraps the hooks as they are when it is instrumented: replaced before that.
    worker_hooks.WorkerHooks.dequeue = batched_dequeue  # type: ignore[method-assign]
    worker_hooks.WorkerHooks.work = drained_work  # type: ignore[method-assign]
    variants.clues_drop(spec)


def overlap(spec: dict[str, Any]) -> None:
    """The worker publishes dequeued after the fork, while the horse runs, and ends the span as the
    horse reports done: would that work, done beside the horse on the other core, leave the job's path?"""
    from opentelemetry_instrumentation_clues.instrumentation import horse_channel, horse_reports, lifecycle
    from opentelemetry_instrumentation_clues.instrumentation.attempts import Stage

    variants.clues_drop(spec)
    pending: list[tuple[Any, ...]] = []
    dequeued, follow, replay = (
        lifecycle.Lifecycle.dequeued,
        horse_channel.HorseChannel.follow,
        horse_reports.ReportReplay.deliver,
    )

    def publish_then_follow(self: Any, horse_pid: int, deliver: Any) -> None:
        while pending:
            dequeued(*pending.pop(0))
        follow(self, horse_pid, deliver)

    def deliver_then_end(self: Any, attempt: Any, report: Any) -> None:
        replay(self, attempt, report)
        if isinstance(report, dict) and report.get("t") == "done" and attempt.stage is Stage.ENDED:
            attempt.end_span(attempt.horse_done_ns)

    lifecycle.Lifecycle.dequeued = lambda *args: pending.append(args)  # type: ignore[method-assign]
    horse_channel.HorseChannel.follow = publish_then_follow  # type: ignore[method-assign]
    horse_reports.ReportReplay.deliver = deliver_then_end  # type: ignore[method-assign]


ABLATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "sdk-only": variants.sdk_only,
    "clues-drop/flush-inline": flush_inline,
    "clues-drop/no-horse-flush": no_horse_flush,
    "clues-drop/no-fork-reset": no_fork_reset,
    "clues-drop/no-log-records": no_log_records,
    "clues-drop/span-only": span_only,
    "clues-drop/no-events-records-metrics": no_events_records_metrics,
    "clues-drop/no-span-end": no_span_end,
    "clues-drop/ids-only": ids_only,
    "clues-drop/ids-only-unread": ids_only_unread,
    "clues-drop/sdk-fork-resources": sdk_fork_resources,
    "clues-drop/batched": batched,
    "clues-drop/overlap": overlap,
}


def child(argv: list[str]) -> int:
    variants.VARIANTS.update(ABLATIONS)  # type: ignore[arg-type]
    return variants.main(argv)


def parent(argv: list[str]) -> int:
    from benchmarks.throughput import BASELINE, THROUGHPUT_METRICS, interleaved_throughput, spread, with_db

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--fork-jobs", type=int, default=150)
    parser.add_argument("--db", type=int, default=14)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--only", default="", help="comma-separated ablations (default all)")
    opts = parser.parse_args(argv)
    opts.redis_url = with_db(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379", opts.db)
    chosen = [n for n in opts.only.split(",") if n] or list(ABLATIONS)
    names = [BASELINE, "clues-drop", *chosen]
    started = time.monotonic()

    def spec(name: str, phase: str) -> dict[str, Any]:
        return {
            "variant": name,
            "phase": phase,
            "redis_url": opts.redis_url,
            "queue": f"ablation-{name}",
            "otlp_endpoint": "",
            "log_path": "/dev/null",
        }

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    measured = interleaved_throughput(names, spec, opts, say, module="benchmarks.ablation")
    print(f"# python benchmarks/ablation.py {' '.join(argv)}")
    rates = measured[BASELINE]["rates"]
    print("plain-rq: " + ", ".join(f"{label} {spread(rates[m], '.0f')}/s" for m, label in THROUGHPUT_METRICS))
    width = max(map(len, names))
    print(
        f"{'variant'.ljust(width)}  "
        + "  ".join(f"{label + ' ratio':22}" for _, label in THROUGHPUT_METRICS)
        + "  CPU µs/job (enqueue, simple, fork)"
    )
    for name in names:
        row = measured[name]
        if row["error"]:
            print(f"{name.ljust(width)}  error: {row['error']}")
            continue
        cpu = ", ".join(f"{statistics.median(row['cpu_us'][m]):.0f}" for m, _ in THROUGHPUT_METRICS)
        print(
            f"{name.ljust(width)}  "
            + "  ".join(f"{spread(row['ratios'][m], '.3f'):22}" for m, _ in THROUGHPUT_METRICS)
            + f"  {cpu}"
        )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1].startswith("{"):
        sys.exit(child(sys.argv))
    sys.exit(parent(sys.argv[1:]))
