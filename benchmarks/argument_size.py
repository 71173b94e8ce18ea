"""What an enqueue costs with and without clues as a job's arguments grow (issue 18).

    python benchmarks/argument_size.py [--rounds 5] [--scale 1.0]

clues keeps at most ``max_value_length`` chars of a job's arguments, so its cost must
not grow with them: only what fits is read. Per argument shape this times enqueues with
plain rq and with clues (SDK batch processors, exporters that drop everything, as the
``clues-drop`` variant of ``throughput.py``) in one process, interleaved: every round
times each shape both ways, in alternating order, so drift on a shared machine hits
both alike. ``description=`` is given, so rq spends nothing on ``repr()`` of the
arguments either way. Prints the median per-enqueue time over rounds and the median
of the per-round ratios (min-max). A report, never a test.

Redis: a database leased as the tests lease theirs (``tests/conftest.py``), so a test
run on the same server never flushes it, nor it theirs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
import rq
from rq import Queue

from benchmarks import variants
from benchmarks.jobs import add
from tests.conftest import _leased_database

# (name, the job's positional arguments, enqueues per timed step at --scale 1)
SHAPES: list[tuple[str, Callable[[], tuple[Any, ...]], int]] = [
    ("small args", lambda: (1, 2), 400),
    ("1,000-int list", lambda: (list(range(1000)), 2), 300),
    ("100,000-int list", lambda: (list(range(100_000)), 2), 40),
    ("2,000-key dict of 100-item lists", lambda: ({f"key-{i}": list(range(100)) for i in range(2000)}, 2), 20),
]


def timed_step(queue: Queue, args: tuple[Any, ...], count: int) -> float:
    """Seconds per enqueue over ``count`` enqueues, telemetry flushed inside the time."""
    started = time.perf_counter()
    for _ in range(count):
        queue.enqueue(add, *args, description="bench")
    variants.flush_telemetry()
    return (time.perf_counter() - started) / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the enqueues per step")
    options = parser.parse_args(argv)

    from opentelemetry_instrumentation_clues import CluesInstrumentor

    variants._global_sdk_providers(*variants._drop_exporters())
    instrumentor = CluesInstrumentor()
    per_enqueue: dict[tuple[str, str], list[float]] = {}
    ratios: dict[str, list[float]] = {}
    started = time.monotonic()
    with _leased_database() as url:
        conn = redis.Redis.from_url(url)
        queue = Queue("argument-size", connection=conn)
        for round_number in range(options.rounds):
            for name, make, count in SHAPES:
                args = make()
                count = max(1, int(count * options.scale))
                modes = ["plain", "clues"] if round_number % 2 == 0 else ["clues", "plain"]
                times: dict[str, float] = {}
                for mode in modes:
                    if mode == "clues":
                        instrumentor.instrument()
                    try:
                        timed_step(queue, args, 2)  # warm-up, untimed
                        times[mode] = timed_step(queue, args, count)
                    finally:
                        if mode == "clues":
                            instrumentor.uninstrument()
                    conn.flushdb()
                for mode, seconds in times.items():
                    per_enqueue.setdefault((name, mode), []).append(seconds)
                ratios.setdefault(name, []).append(times["clues"] / times["plain"])
        conn.close()

    print(f"# python benchmarks/argument_size.py --rounds {options.rounds} --scale {options.scale}")
    print(
        f"# Python {platform.python_version()}, rq {rq.__version__}, redis-py {redis.__version__}; "
        f"{options.rounds} rounds, medians; {time.monotonic() - started:.0f}s"
    )
    print(f"{'arguments':<34} {'plain rq':>10} {'clues':>10} {'added':>10}  clues/plain [min-max]")
    for name, _, _ in SHAPES:
        plain = statistics.median(per_enqueue[(name, "plain")]) * 1000
        clues = statistics.median(per_enqueue[(name, "clues")]) * 1000
        ratio = ratios[name]
        print(
            f"{name:<34} {plain:>8.3f}ms {clues:>8.3f}ms {clues - plain:>8.3f}ms"
            f"  {statistics.median(ratio):.2f} [{min(ratio):.2f}-{max(ratio):.2f}]"
        )


if __name__ == "__main__":
    main()
