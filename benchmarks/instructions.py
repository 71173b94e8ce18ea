"""Instructions per enqueue and per SimpleWorker job, counted by valgrind's callgrind (issue 18).

    python benchmarks/instructions.py [--small 100] [--large 300] [--rounds 3] [--variants plain-rq,...]

Wall and CPU time on a shared machine move by tens of percent between runs; callgrind
counts the instructions a process executes, whatever else the machine does. So the
issue-18 question, *how much work does clues do beyond the SDK calls it makes*
(``sdk-floor``), gets a steadier answer here. Not an exact one: the SDK's batch threads
and the garbage collector run on schedules of their own, so a count moves by a few
percent from run to run (two runs of 200 enqueues: 2017k and 2091k per enqueue); each
figure is the median over ``--rounds``.

Each variant (``benchmarks/variants.py``) runs in fresh processes under callgrind, with
``PYTHONHASHSEED=0``: once enqueueing ``--small`` jobs and once ``--large`` (the
difference over the extra jobs cancels start-up and imports), and the same again with a
SimpleWorker performing them (minus the enqueues: per job). Everything ends with a
flush of the SDK providers, so the work the jobs' telemetry causes is counted. The
exporters drop everything. A report, never a test; it needs ``valgrind`` on PATH. Each
run takes 15-40 s under callgrind; runs go two at a time.

Redis: a leased database, as the tests lease theirs, or ``--redis-url`` and ``--db``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PHASES = ("enqueue", "work")  # work: enqueue, then a SimpleWorker performs them
_COLLECTED = re.compile(r"Collected : (\d+)")


def child(variant: str, url: str, jobs: int, phase: str) -> None:
    """Under callgrind: set the variant up, warm up, then the counted part."""
    import redis
    from rq import Queue, SimpleWorker

    from benchmarks import variants

    variants.VARIANTS[variant]({"otlp_endpoint": "http://127.0.0.1:9", "log_path": os.devnull})
    conn = redis.Redis.from_url(url)
    queue = Queue(f"instructions-{variant}-{phase}-{jobs}", connection=conn)
    variants.enqueue(queue, 20)  # warm-up: first-call costs (imports, caches) out of the difference
    SimpleWorker([queue], connection=conn).work(burst=True, logging_level=variants.LOGGING_LEVEL)
    variants.enqueue(queue, jobs)
    if phase == "work":
        SimpleWorker([queue], connection=conn).work(burst=True, logging_level=variants.LOGGING_LEVEL)
    variants.flush_telemetry()
    queue.empty()


def count(variant: str, url: str, jobs: int, phase: str) -> int:
    """Instructions one child executes."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        variant,
        url,
        str(jobs),
        phase,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{variant} {phase} {jobs}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return int(found.group(1))


def per_job(variants: list[str], url: str, small: int, large: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per variant: instructions per enqueue and per SimpleWorker job (medians over rounds)."""
    runs = [(variant, phase, jobs) for variant in variants for phase in PHASES for jobs in (small, large)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(lambda run: count(run[0], url, run[2], run[1]), runs * rounds))
    counted = {run: statistics.median(counts[index :: len(runs)]) for index, run in enumerate(runs)}
    results = {}
    for variant in variants:
        enqueue = (counted[variant, "enqueue", large] - counted[variant, "enqueue", small]) / (large - small)
        work = (counted[variant, "work", large] - counted[variant, "work", small]) / (large - small)
        results[variant] = {"enqueue": enqueue, "simple": work - enqueue}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--large", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each count; the median is used")
    parser.add_argument("--variants", default="plain-rq,sdk-floor,clues-drop", help="from benchmarks/variants.py")
    parser.add_argument("--redis-url", help="a server to use (default: a database leased as the tests lease theirs)")
    parser.add_argument("--db", type=int, help="with --redis-url: the db to use (default: the URL's)")
    parser.add_argument("--child", nargs=4, metavar=("VARIANT", "URL", "JOBS", "PHASE"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        variant, url, jobs, phase = options.child
        child(variant, url, int(jobs), phase)
        return 0
    if options.large <= options.small:
        parser.error("--large must be more than --small")

    from benchmarks.throughput import given_or_leased_database

    names = options.variants.split(",")
    database = given_or_leased_database(options.redis_url, options.db)
    with database as url:
        results = per_job(names, url, options.small, options.large, options.rounds)

    import rq

    sizes = f"--small {options.small} --large {options.large} --rounds {options.rounds}"
    print(f"# python benchmarks/instructions.py {sizes} --variants {options.variants}")
    print(f"# rq {rq.__version__}; instructions (callgrind) per enqueue and per SimpleWorker job, in thousands")
    floor = results.get("sdk-floor")
    print(f"{'variant':<28} {'enqueue':>10} {'SimpleWorker':>13}   beyond sdk-floor (enqueue, SimpleWorker)")
    for name in names:
        row = results[name]
        beyond = ""
        if floor is not None and name != "sdk-floor":
            enqueue, simple = row["enqueue"] - floor["enqueue"], row["simple"] - floor["simple"]
            beyond = f"{enqueue / 1e3:+.0f}k, {simple / 1e3:+.0f}k"
        print(f"{name:<28} {row['enqueue'] / 1e3:>9.0f}k {row['simple'] / 1e3:>12.0f}k   {beyond}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
