"""Where a forking rq Worker's time goes per job, with and without clues (issue 14).

    python benchmarks/fork_anatomy.py [--rounds 5] [--jobs 150] [--variants plain-rq,sdk-only,clues-drop,...]

The forking Worker's throughput is set by the worker and its horse taking turns, so
this splits a job's cost between them. Per variant (``benchmarks/variants.py``; each
round runs every variant in a fresh process, in rotating order, so drift on a shared
machine hits them alike) it prints medians over rounds of, per job:

- wall time of ``Worker.work`` and its ratio to plain rq in the same round;
- CPU of the worker process (all its threads: batch exporters included) and of its horses;
- a horse's CPU by the end of the fork handlers, before rq's code runs in it: what the
  after-fork hooks of the SDK (new batch threads, resource re-detection) and of clues cost;
- minor page faults in the worker and in its horses: after a fork every page the worker or
  the horse writes is copied (copy-on-write) or re-mapped, and in Python reading an object
  writes its reference count, so any per-job Python work in either process pays per page;
- with ``--by-hook``, one more run per variant counts the worker's faults inside each of clues'
  worker-side hooks, rq's own call excluded: where clues' share of those faults is taken.

Besides the variants, the ablations of ``benchmarks/ablation.py`` can be named: the
``clues-drop/no-events-records-metrics`` … ``clues-drop/ids-only-unread`` steps price what a
publisher process that never forks could take out of the worker (docs/performance.md).

A report, never a test. Redis: a leased database, as the tests lease theirs, or
``--redis-url`` and ``--db`` as the other scripts take them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIELDS = ("wall", "worker_cpu", "horse_cpu", "horse_cpu_at_fork_end", "worker_faults", "horse_faults")


# The hooks clues runs in the worker process for every forked job (benchmarks: --by-hook).
WORKER_SIDE_HOOKS = ("dequeue", "fork_work_horse", "wait_for_horse", "monitor_work_horse")
_faults_by_hook: dict[str, int] = {}


def count_faults_by_hook() -> None:
    """Make each worker-side hook count the minor faults it takes in the worker, rq's call inside
    it excluded. Before instrumenting: clues wraps the hooks as they are when it is instrumented."""
    from opentelemetry_instrumentation_clues.instrumentation.worker_hooks import WorkerHooks

    worker_pid = os.getpid()

    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def counted(name: str, hook: Any) -> Any:
        def hook_counting_faults(self: Any, wrapped: Any, instance: Any, args: tuple, kwargs: dict) -> Any:
            if os.getpid() != worker_pid:
                return hook(self, wrapped, instance, args, kwargs)
            in_rq = 0

            def rq_call(*call_args: Any, **call_kwargs: Any) -> Any:
                nonlocal in_rq
                before_rq = faults()
                try:
                    return wrapped(*call_args, **call_kwargs)
                finally:
                    in_rq += faults() - before_rq

            before = faults()
            try:
                return hook(self, rq_call, instance, args, kwargs)
            finally:
                _faults_by_hook[name] = _faults_by_hook.get(name, 0) + faults() - before - in_rq

        return hook_counting_faults

    for name in WORKER_SIDE_HOOKS:
        setattr(WorkerHooks, name, counted(name, getattr(WorkerHooks, name)))


def measure(variant: str, url: str, jobs: int, endpoint: str, by_hook: bool = False) -> dict[str, float]:
    """In a fresh process: one variant's worker over ``jobs`` jobs, per-job figures."""
    import redis
    from rq import Queue, Worker

    from benchmarks import variants
    from benchmarks.ablation import ABLATIONS

    variants.VARIANTS.update(ABLATIONS)  # type: ignore[arg-type]
    if by_hook:
        count_faults_by_hook()
    variants.VARIANTS[variant]({"otlp_endpoint": endpoint, "log_path": os.devnull})
    conn = redis.Redis.from_url(url)
    queue = Queue("fork-anatomy", connection=conn)
    variants.enqueue(queue, 10)
    Worker([queue], connection=conn).work(burst=True, logging_level=variants.LOGGING_LEVEL)  # warm-up

    # Each horse writes its CPU at the end of the fork handlers (registered last, so it runs
    # after the SDK's and clues') into its own file; read back after the run.
    marks = tempfile.mkdtemp(prefix="fork-anatomy-")
    os.register_at_fork(after_in_child=lambda: _mark(marks))

    variants.enqueue(queue, jobs)
    variants.flush_telemetry()
    _faults_by_hook.clear()
    before_self, before_children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    started = time.perf_counter()
    Worker([queue], connection=conn).work(burst=True, logging_level=variants.LOGGING_LEVEL)
    variants.flush_telemetry()
    wall = time.perf_counter() - started
    after_self, after_children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    conn.flushdb()

    at_fork_end = [float(Path(marks, name).read_text()) for name in os.listdir(marks)]
    return {
        "wall": wall / jobs * 1e6,
        "worker_cpu": _cpu(before_self, after_self) / jobs * 1e6,
        "horse_cpu": _cpu(before_children, after_children) / jobs * 1e6,
        "horse_cpu_at_fork_end": statistics.median(at_fork_end) * 1e6 if at_fork_end else float("nan"),
        "worker_faults": (after_self.ru_minflt - before_self.ru_minflt) / jobs,
        "horse_faults": (after_children.ru_minflt - before_children.ru_minflt) / jobs,
        **{f"hook:{name}": count / jobs for name, count in _faults_by_hook.items()},
    }


def _run_child(variant: str, url: str, jobs: int, endpoint: str, by_hook: bool) -> dict[str, float]:
    child = [sys.executable, __file__, "--child", variant, url, str(jobs), endpoint, "1" if by_hook else "0"]
    out = subprocess.run(child, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _mark(directory: str) -> None:
    Path(directory, str(os.getpid())).write_text(repr(time.process_time()))


def _cpu(before: Any, after: Any) -> float:
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=150)
    parser.add_argument(
        "--variants", default="plain-rq,sdk-only,clues-drop", help="names from benchmarks/variants.py, ablation.py"
    )
    parser.add_argument("--redis-url", help="a server to use (default: a database leased as the tests lease theirs)")
    parser.add_argument("--db", type=int, help="with --redis-url: the db to use and flush (default: the URL's)")
    parser.add_argument(
        "--by-hook",
        action="store_true",
        help="after the rounds, one more run per variant counting the worker's faults in each clues hook",
    )
    parser.add_argument(
        "--child", nargs=5, metavar=("VARIANT", "URL", "JOBS", "OTLP", "BY_HOOK"), help=argparse.SUPPRESS
    )
    options = parser.parse_args()
    if options.child:
        variant, url, jobs, endpoint, by_hook = options.child
        print(json.dumps(measure(variant, url, int(jobs), endpoint, by_hook == "1")))
        return 0

    from benchmarks.throughput import given_or_leased_database, otlp_sink

    names = options.variants.split(",")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    started = time.monotonic()
    database = given_or_leased_database(options.redis_url, options.db)
    with database as url, otlp_sink() as endpoint:  # the sink for the *-otlp-http variants
        for round_number in range(options.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                results[name].append(_run_child(name, url, options.jobs, endpoint, by_hook=False))
        by_hook = {
            name: _run_child(name, url, options.jobs, endpoint, by_hook=True) for name in names if options.by_hook
        }

    import rq

    print(f"# python benchmarks/fork_anatomy.py --rounds {options.rounds} --jobs {options.jobs}")
    print(
        f"# nproc {os.cpu_count()}, Python {platform.python_version()}, rq {rq.__version__}; "
        f"medians over rounds, per job; {time.monotonic() - started:.0f}s"
    )
    header = ("variant", "ratio", "wall us", "worker cpu", "horse cpu", "horse cpu by end of fork hooks")
    width = max(28, *map(len, names))
    print(f"{header[0]:<{width}} {header[1]:>6} {header[2]:>8} {header[3]:>11} {header[4]:>10}  {header[5]}")
    baseline = results[names[0]]
    for name in names:
        rows = results[name]
        ratio = statistics.median(b["wall"] / r["wall"] for b, r in zip(baseline, rows, strict=True))
        med = {field: statistics.median(row[field] for row in rows) for field in FIELDS}
        print(
            f"{name:<{width}} {ratio:>6.2f} {med['wall']:>8.0f} {med['worker_cpu']:>11.0f} {med['horse_cpu']:>10.0f}"
            f"  {med['horse_cpu_at_fork_end']:>8.0f}"
        )
    print(f"\n{'variant':<{width}} {'minor faults/job: worker':>24} {'horse':>8}")
    for name in names:
        rows = results[name]
        worker = statistics.median(row["worker_faults"] for row in rows)
        horse = statistics.median(row["horse_faults"] for row in rows)
        print(f"{name:<{width}} {worker:>24.0f} {horse:>8.0f}")
    print(f"\nratio: plain rq's wall time per job / the variant's, in the same round ({names[0]} = 1)")
    if options.by_hook:
        _print_faults_by_hook(by_hook, width)
    return 0


def _print_faults_by_hook(runs: dict[str, dict[str, float]], width: int) -> None:
    print("\nminor faults/job in the worker by clues hook (rq's call inside it excluded; one more run per variant)")
    print(f"{'variant':<{width}} {'total':>6} " + " ".join(f"{name:>18}" for name in WORKER_SIDE_HOOKS))
    for name, run in runs.items():
        cells = " ".join(
            f"{run[f'hook:{hook}']:>18.0f}" if f"hook:{hook}" in run else f"{'-':>18}" for hook in WORKER_SIDE_HOOKS
        )
        print(f"{name:<{width}} {run['worker_faults']:>6.0f} {cells}")


if __name__ == "__main__":
    raise SystemExit(main())
