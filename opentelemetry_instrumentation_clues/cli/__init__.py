"""The ``clues`` command: analyse legacy clues JSON-line event logs.

    clues stats FILE...                 per (queue, worker_class) counts, failure rate, percentiles, SLA
    clues trace EVENT_HASH FILE...      one job's events in order
    clues tail FILE                     follow a live log (across rotation), printing matching events
    clues demo                          run a worker on a mix of jobs, log their events, show the stats
    clues monitor [QUEUE...]            export queue health (jobs by status, oldest job, workers) as OTel metrics

Exit codes: 0 ok; 1 nothing found (no valid events, unknown event_hash); 2 usage error or an input
that cannot be read. Run as ``clues`` or ``python -m opentelemetry_instrumentation_clues.cli``.
The analysis commands use the standard library only (``demo`` needs rq and redis, imported when it runs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry_instrumentation_clues.cli import stats as stats_mod
from opentelemetry_instrumentation_clues.cli import timeline
from opentelemetry_instrumentation_clues.cli.event_log import (
    KNOWN_EVENT_TYPES,
    InputError,
    Malformed,
    Progress,
    check_inputs,
    iter_events,
    parse_duration,
    total_size,
)
from opentelemetry_instrumentation_clues.cli.tail import TailFilter, run_tail

PROG = "clues"

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_USAGE = 2

_FILES_HELP = "event log(s): JSON lines as written by LogPublisher; '-' reads stdin; gzip is detected"

_STATS_EPILOG = f"""\
definitions:
  job             a distinct event_hash with a terminal event (perform_finished or failed);
                  jobs with no terminal event yet, or canceled before they ran, are not counted
  outcome         the job's last terminal event in reading order (FILEs in the order given,
                  lines in file order); a job that failed, was retried and then finished is one
                  succeeded job (also counted as retried)
  failures        jobs whose outcome is failed; fail% = failures / jobs
  time_in_queue   one sample per dequeued event (each attempt waits in the queue once)
  time_to_perform one sample per perform_finished / failed event (each attempt)
  SLA share       share of dequeued events with time_in_queue <= --sla

percentiles are nearest-rank, from a fixed log-bucket histogram: every reported percentile is
within {stats_mod.LogHistogram.RELATIVE_ERROR:.0%} (relative) of the exact value (values under 1us
are reported as 0). Memory stays flat whatever the input size: about 1,500 buckets per group at
most, plus one small entry per job whose latest terminal event is failed.

malformed lines (bad JSON, missing keys, wrong types) are skipped, counted and summarised on
stderr (and under "malformed" with --json). A progress indicator is shown on stderr for long
runs when stderr is a terminal.
"""


def _sla_type(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _print_malformed(malformed: Malformed) -> None:
    summary = malformed.summary(PROG)
    if summary:
        print(summary, file=sys.stderr)


def cmd_stats(args: argparse.Namespace) -> int:
    check_inputs(args.files)
    malformed = Malformed()
    progress = Progress(None if args.no_progress else total_size(args.files))
    if args.no_progress:
        progress.enabled = False
    collector = stats_mod.StatsCollector(args.sla)
    try:
        for event in iter_events(args.files, malformed, progress.update):
            collector.add(event)
    finally:
        progress.close()
    groups = collector.finish()
    _print_malformed(malformed)
    if args.json:
        total = stats_mod.totals(groups)
        document = {
            "inputs": list(args.files),
            "events": collector.events,
            "sla_seconds": args.sla,
            "percentile_method": "nearest-rank, log-bucket histogram",
            "percentile_relative_error": stats_mod.LogHistogram.RELATIVE_ERROR,
            "groups": [group.as_dict(args.sla) for group in groups],
            "totals": total.as_dict(args.sla),
            "malformed": malformed.as_dict(),
        }
        print(json.dumps(document, indent=2))
    elif groups:
        print(stats_mod.render_table(groups, args.sla))
    if not collector.events:
        print(f"{PROG}: no valid events found", file=sys.stderr)
        return EXIT_NOT_FOUND
    return EXIT_OK


def cmd_trace(args: argparse.Namespace) -> int:
    check_inputs(args.files)
    malformed = Malformed()
    job = timeline.Timeline(args.event_hash)
    for event in iter_events(args.files, malformed):
        job.add(event)
    _print_malformed(malformed)
    events = job.ordered()
    if not events:
        where = ", ".join("<stdin>" if f == "-" else f for f in args.files)
        print(f"{PROG}: no events with event_hash {args.event_hash} in {where}", file=sys.stderr)
        return EXIT_NOT_FOUND
    if args.json:
        document = {
            "event_hash": job.event_hash,
            "events": timeline.as_dicts(events),
            "dropped": job.dropped,
            "malformed": malformed.as_dict(),
        }
        print(json.dumps(document, indent=2))
    else:
        print(timeline.render_table(events, show_backtrace=args.backtrace))
        if job.dropped:
            print(
                f"{PROG}: {job.dropped} more event(s) not shown (limit {timeline.MAX_EVENTS})",
                file=sys.stderr,
            )
    return EXIT_OK


def cmd_tail(args: argparse.Namespace) -> int:
    if args.file == "-":
        print(
            f"{PROG} tail: error: cannot follow stdin; pipe into 'clues tail' is not supported",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if os.path.isdir(args.file):
        print(f"{PROG} tail: error: {args.file} is a directory", file=sys.stderr)
        return EXIT_USAGE
    malformed = Malformed()
    try:
        run_tail(
            args.file,
            TailFilter(args.queue, args.event_type, args.worker_class),
            raw=args.raw,
            from_start=args.from_start,
            max_events=args.max_events,
            poll_interval=args.poll_interval,
            malformed=malformed,
        )
    except KeyboardInterrupt:
        pass  # Ctrl-C is how tail is meant to stop: exit 0, no traceback.
    finally:
        _print_malformed(malformed)
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace) -> int:
    from opentelemetry_instrumentation_clues.monitor.command import (
        cmd_monitor as run_monitor,  # rq, redis and the SDK: only when it runs
    )

    return run_monitor(args)


def _add_monitor_parser(commands: Any) -> argparse.ArgumentParser:
    monitor = commands.add_parser(
        "monitor",
        help="export RQ queue health (jobs by status, oldest waiting job, workers) as OTel metrics",
        description="Export RQ queue health as OpenTelemetry gauges: rq.queue.jobs (by rq.job.status), "
        "rq.queue.oldest_job.age and rq.workers (by rq.worker.state), read from Redis in one round trip "
        "per collection. The exporter comes from the standard environment: OTEL_METRICS_EXPORTER (otlp, "
        "console, prometheus, none; default otlp), OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_METRIC_EXPORT_INTERVAL "
        "(ms), OTEL_SERVICE_NAME (default rq-monitor). Runs until SIGTERM or SIGINT, then exports once more.",
        epilog="exit codes: 0 stopped by a signal, 2 Redis unreachable at start or a bad exporter setting.",
    )
    monitor.add_argument(
        "--redis-url",
        default=None,
        metavar="URL",
        help="Redis to watch (default: $RQ_REDIS_URL, $REDIS_URL, else redis://localhost:6379)",
    )
    monitor.add_argument("queues", nargs="*", metavar="QUEUE", help="queues to watch (default: every known queue)")
    monitor.set_defaults(func=cmd_monitor)
    return monitor


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Analyse clues job-lifecycle event logs (the legacy JSON-line format).",
        epilog="exit codes: 0 ok, 1 nothing found, 2 usage error or unreadable input. "
        "Run '%(prog)s COMMAND --help' for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    stats = commands.add_parser(
        "stats",
        help="per (queue, worker_class): jobs, failures, latency percentiles, SLA share",
        description="Per (queue, worker_class): jobs, failures, failure rate, p50/p95/p99 of\n"
        "time_in_queue and time_to_perform, and the share of dequeues within the SLA; plus a\n"
        "TOTAL row. Streams its input: any size, flat memory.",
        epilog=_STATS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stats.add_argument("files", nargs="+", metavar="FILE", help=_FILES_HELP)
    stats.add_argument(
        "--sla",
        type=_sla_type,
        default=2.0,
        metavar="DURATION",
        help="time_in_queue target: 500ms, 2s, 1.5m, 1h or plain seconds (default: 2s)",
    )
    stats.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    stats.add_argument("--no-progress", action="store_true", help="never show the progress indicator")
    stats.set_defaults(func=cmd_stats)

    trace = commands.add_parser(
        "trace",
        help="one job's events in order, with the time between them",
        description="Show every event of one job (all attempts) in order, with the time between "
        "them. Events are ordered by timestamp (whole seconds), then attempt, then the order they "
        "were written in (one FILE) or the lifecycle order (several FILEs). Exits 1 if the "
        "event_hash is not found.",
    )
    trace.add_argument("event_hash", metavar="EVENT_HASH", help="the job's event_hash (32 hex chars)")
    trace.add_argument("files", nargs="+", metavar="FILE", help=_FILES_HELP)
    trace.add_argument("--json", action="store_true", help="print the events as JSON")
    trace.add_argument("--backtrace", action="store_true", help="also print the backtrace of each failure")
    trace.set_defaults(func=cmd_trace)

    tail = commands.add_parser(
        "tail",
        help="follow a live event log (like tail -F), printing matching events",
        description="Follow FILE like 'tail -F': new events are printed as they are written, across "
        "rotation (file moved or deleted and recreated) and truncation. Filters combine with AND; "
        "each may be repeated (OR). Ctrl-C stops it (exit 0).",
    )
    tail.add_argument("file", metavar="FILE", help="the event log to follow (not gzip, not stdin)")
    tail.add_argument("--queue", action="append", metavar="Q", help="only events of queue Q")
    tail.add_argument(
        "--event-type",
        action="append",
        choices=KNOWN_EVENT_TYPES,
        metavar="TYPE",
        help=f"only events of this type ({', '.join(KNOWN_EVENT_TYPES)})",
    )
    tail.add_argument("--worker-class", action="append", metavar="W", help="only jobs of worker_class W")
    tail.add_argument("--raw", action="store_true", help="print the JSON lines as written")
    tail.add_argument(
        "--from-start",
        action="store_true",
        help="print the events already in FILE first (default: only new ones)",
    )
    tail.add_argument("--max-events", type=_positive_int, metavar="N", help="exit (0) after printing N matching events")
    tail.add_argument(
        "--poll-interval",
        type=_sla_type,
        default=0.25,
        metavar="DURATION",
        help="how often to check FILE at its end (default: 250ms)",
    )
    tail.set_defaults(func=cmd_tail)

    # `clues demo` imports rq and redis only when it runs: the analysis commands stay standard-library only.
    from opentelemetry_instrumentation_clues.demo import runner as demo_runner  # standard library at import

    demo_runner.add_parser(commands, show_stats=main)
    _add_monitor_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``clues`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` & co: stop quietly (and keep Python from complaining at exit).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


__all__ = ["EXIT_NOT_FOUND", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]
