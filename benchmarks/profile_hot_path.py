"""Where the time goes: cProfile of enqueue and SimpleWorker, plain RQ vs clues with dropping exporters.

    python benchmarks/profile_hot_path.py [--jobs 2000] [--db 14] [--top 25] [--variant clues-drop]

Runs one variant in this process (so run it once per variant), prints the wall
time per job of each part and the functions with the most own time, with
their cumulative time, so clues' share can be read off.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from rq import Queue, SimpleWorker

from benchmarks import variants
from benchmarks.throughput import with_db


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--db", type=int, default=14)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--variant", default="clues-drop", choices=sorted(variants.VARIANTS))
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--filter", default="", help="only show functions whose path contains this")
    opts = parser.parse_args()
    url = with_db(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379", opts.db)
    variants.VARIANTS[opts.variant]({"otlp_endpoint": "http://127.0.0.1:4318", "log_path": "/tmp/clues-profile.log"})
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    queue = Queue("profile", connection=conn)
    variants.enqueue(queue, 50)  # warm-up
    SimpleWorker([queue], connection=conn).work(burst=True, logging_level=variants.LOGGING_LEVEL)

    for label, action in (
        ("enqueue", lambda: variants.enqueue(queue, opts.jobs)),
        ("SimpleWorker", lambda: SimpleWorker([queue], connection=conn).work(burst=True, logging_level="WARNING")),
    ):
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        action()
        variants.flush_telemetry()
        profiler.disable()
        elapsed = time.perf_counter() - start
        print(f"\n=== {opts.variant} {label}: {elapsed / opts.jobs * 1e6:.0f} us/job under cProfile ===")
        stats = pstats.Stats(profiler)
        stats.sort_stats(opts.sort)
        stats.print_stats(opts.filter or None, opts.top) if opts.filter else stats.print_stats(opts.top)
    conn.flushdb()
    return 0


if __name__ == "__main__":
    sys.exit(main())
