"""One benchmark variant in one fresh process: ``python -m benchmarks.variants '<json spec>'``.

Instrumentation patches rq's classes for the whole process, so every variant
runs in a process of its own, started by ``benchmarks/throughput.py``. The
process sets its variant up, runs one phase and prints one line
``RESULT {json}`` on stdout.

Variants are one small function each (``VARIANTS``); phases:

* ``throughput``: serves timed steps the parent asks for on stdin, one at a
  time, so all variants' processes live side by side and the parent
  interleaves them step by step: ``enqueue`` N jobs, ``simple`` (a SimpleWorker
  over those N jobs), ``fork`` (``Worker(...).work(burst=True)`` over M jobs
  enqueued untimed). Every timed step ends with a force-flush of the telemetry,
  so all the work its jobs caused is inside the time.
* ``enqueue``: enqueue N jobs, untimed (the producer for ``rss``).
* ``rss``: a SimpleWorker works ``warm`` jobs, then the rest; RSS (after a
  flush and ``gc.collect()``) is taken after each part.
* ``commands``: enqueue + SimpleWorker, then enqueue + forking Worker, for the
  parent to read INFO commandstats around it.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import redis
from rq import Queue, SimpleWorker, Worker

from benchmarks.jobs import add

LOGGING_LEVEL = "WARNING"  # rq's per-job INFO lines would be the same cost in every variant


# --- exporters that drop everything ----------------------------------------------------------
def _drop_exporters() -> tuple[Any, Any]:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class DropSpanExporter(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    class DropLogRecordExporter(LogRecordExporter):
        def export(self, batch: Sequence[Any]) -> LogRecordExportResult:
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return True

    return DropSpanExporter(), DropLogRecordExporter()


def _otlp_http_exporters(endpoint: str) -> tuple[Any, Any]:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), OTLPLogExporter(endpoint=f"{endpoint}/v1/logs")


def _otlp_grpc_exporters(endpoint: str) -> tuple[Any, Any]:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, insecure=True), OTLPLogExporter(endpoint=endpoint, insecure=True)


def _global_sdk_providers(span_exporter: Any, log_exporter: Any) -> None:
    """SDK providers with batch processors, set globally as ``opentelemetry-instrument`` does."""
    from opentelemetry import _logs, trace
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(tracer_provider)
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    _logs.set_logger_provider(logger_provider)


# --- the variants: each sets itself up and may return a check run after the phase ------------
Check = Callable[[], "str | None"]  # returns an error text, or None when the variant did its job


def plain_rq(spec: dict[str, Any]) -> Check | None:
    return None


def sdk_only(spec: dict[str, Any]) -> Check | None:
    """Reference: the SDK set up as for clues-drop, but nothing instrumented (what the SDK alone costs)."""
    _global_sdk_providers(*_drop_exporters())
    return None


def _defining_class(cls: type, method: str) -> type:
    return next(klass for klass in cls.__mro__ if method in vars(klass))


def sdk_floor(spec: dict[str, Any]) -> Check | None:
    """Reference: exactly the SDK calls clues makes per enqueue and per worker job
    (``benchmarks/sdk_floor.py``), made by two plain wrappers around rq's methods, with the
    SDK set up as for clues-drop and nothing of clues. clues-drop's CPU beyond this row is
    clues' own work."""
    _global_sdk_providers(*_drop_exporters())
    _wrap_with_sdk_calls()
    return None


def sdk_floor_otlp_http(spec: dict[str, Any]) -> Check | None:
    """Reference: as sdk-floor, exporting over OTLP/HTTP as clues-otlp-http does: the SDK calls
    clues makes, exported, with nothing of clues."""
    _global_sdk_providers(*_otlp_http_exporters(spec["otlp_endpoint"]))
    _wrap_with_sdk_calls()
    return None


def _wrap_with_sdk_calls() -> None:
    from benchmarks import sdk_floor as floor

    per_enqueue = floor.sdk_calls_per_enqueue()
    owner = _defining_class(Queue, "enqueue_job")
    enqueue_job = vars(owner)["enqueue_job"]

    def enqueue_job_and_sdk_calls(self: Any, *args: Any, **kwargs: Any) -> Any:
        job = enqueue_job(self, *args, **kwargs)
        per_enqueue()
        return job

    owner.enqueue_job = enqueue_job_and_sdk_calls
    owner = _defining_class(SimpleWorker, "perform_job")
    perform_job = vars(owner)["perform_job"]

    def perform_job_and_sdk_calls(self: Any, *args: Any, **kwargs: Any) -> Any:
        floor.worker_side_sdk_calls()
        return perform_job(self, *args, **kwargs)

    owner.perform_job = perform_job_and_sdk_calls


def clues_drop(spec: dict[str, Any]) -> Check | None:
    from opentelemetry_instrumentation_clues import CluesInstrumentor

    _global_sdk_providers(*_drop_exporters())
    CluesInstrumentor().instrument()
    return None


def clues_otlp_http(spec: dict[str, Any]) -> Check | None:
    from opentelemetry_instrumentation_clues import CluesInstrumentor

    _global_sdk_providers(*_otlp_http_exporters(spec["otlp_endpoint"]))
    CluesInstrumentor().instrument()
    return None


def clues_otlp_grpc(spec: dict[str, Any]) -> Check | None:
    """OTLP/gRPC as installed (gRPC's fork handlers on): a forking worker relays its RPCs."""
    from opentelemetry_instrumentation_clues import CluesInstrumentor

    _global_sdk_providers(*_otlp_grpc_exporters(spec["otlp_grpc_endpoint"]))
    CluesInstrumentor().instrument()
    return None


def clues_otlp_grpc_in_process(spec: dict[str, Any]) -> Check | None:
    """OTLP/gRPC with gRPC's fork handlers off (read when gRPC starts, so set before): no relay."""
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    return clues_otlp_grpc(spec)


def clues_drop_no_span_events(spec: dict[str, Any]) -> Check | None:
    """clues-drop with span_events=False: lifecycle events as log records only (OTEP 4430)."""
    from opentelemetry_instrumentation_clues import CluesInstrumentor

    _global_sdk_providers(*_drop_exporters())
    CluesInstrumentor().instrument(span_events=False)
    return None


def clues_legacy_log(spec: dict[str, Any]) -> Check | None:
    """Seed-style wiring, in one call and with no other OTel set-up (docs/design.md, "The legacy output")."""
    from opentelemetry_instrumentation_clues import CluesInstrumentor
    from opentelemetry_instrumentation_clues.legacy.publishers import LogPublisher

    path = spec["log_path"]
    CluesInstrumentor().instrument(event_publisher=LogPublisher(path))

    def wrote_lines() -> str | None:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return None
        return "instrument(event_publisher=LogPublisher(path)) was accepted but wrote no line (wiring not in this code)"

    return wrote_lines


def otel_instrumentation_rq(spec: dict[str, Any]) -> Check | None:
    """The PyPI package ``opentelemetry-instrumentation-rq``, with the same dropping exporters."""
    from opentelemetry_instrumentation_rq import RQInstrumentor

    _global_sdk_providers(*_drop_exporters())
    RQInstrumentor().instrument()
    return None


def otel_instrumentation_rq_otlp_http(spec: dict[str, Any]) -> Check | None:
    """The peer with OTLP/HTTP to the same loopback sink (its horses force-flush every job)."""
    from opentelemetry_instrumentation_rq import RQInstrumentor

    _global_sdk_providers(*_otlp_http_exporters(spec["otlp_endpoint"]))
    RQInstrumentor().instrument()
    return None


VARIANTS: dict[str, Callable[[dict[str, Any]], Check | None]] = {
    "plain-rq": plain_rq,
    "sdk-only": sdk_only,
    "sdk-floor": sdk_floor,
    "sdk-floor-otlp-http": sdk_floor_otlp_http,
    "clues-drop": clues_drop,
    "clues-otlp-http": clues_otlp_http,
    "clues-otlp-grpc": clues_otlp_grpc,
    "clues-otlp-grpc-in-process": clues_otlp_grpc_in_process,
    "clues-drop-no-span-events": clues_drop_no_span_events,
    "clues-legacy-log": clues_legacy_log,
    "otel-instrumentation-rq": otel_instrumentation_rq,
    "otel-instrumentation-rq-otlp-http": otel_instrumentation_rq_otlp_http,
}


# --- phases -----------------------------------------------------------------------------------
def flush_telemetry() -> None:
    from opentelemetry import _logs, trace

    for provider in (trace.get_tracer_provider(), _logs.get_logger_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush()


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def enqueue(queue: Queue, count: int) -> None:
    for i in range(count):
        queue.enqueue(add, i, 1)


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (the work horses)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(action: Callable[[], Any], jobs: int) -> dict[str, float]:
    """Jobs per second (wall) and CPU microseconds per job of ``action`` plus its telemetry flush."""
    cpu, start = cpu_seconds(), time.perf_counter()
    action()
    flush_telemetry()
    wall = time.perf_counter() - start
    return {"rate": jobs / wall, "cpu_us": (cpu_seconds() - cpu) / jobs * 1e6}


def serve_throughput(spec: dict[str, Any], conn: redis.Redis) -> dict[str, Any]:
    """Run timed steps on request, so the parent can interleave the variants step by step.

    Every variant process is started at once and waits; the parent sends one
    JSON line per step (``{"op": "enqueue"|"simple"|"fork", "n": jobs}``) to
    each in turn and reads one ``RESULT`` line back; ``{"op": "quit"}`` ends it.
    """
    queue = Queue(spec["queue"], connection=conn)
    fork_queue = Queue(spec["queue"] + "-fork", connection=conn)

    def work(worker_class: type, on: Queue) -> None:
        worker_class([on], connection=conn).work(burst=True, logging_level=LOGGING_LEVEL)

    # Warm-up: imports, first spans, rq's lazy set-up; untimed.
    enqueue(queue, 20)
    work(SimpleWorker, queue)
    flush_telemetry()
    print("RESULT " + json.dumps({"ready": True}), flush=True)
    enqueued = 0
    for line in sys.stdin:
        step = json.loads(line)
        op, n = step["op"], step.get("n", 0)
        if op == "quit":
            break
        if op == "enqueue":
            result = timed(lambda n=n: enqueue(queue, n), n)
            enqueued = n
        elif op == "simple":
            n, found, enqueued = enqueued, queue.count, 0
            result = timed(lambda: work(SimpleWorker, queue), max(found, 1))
            if found != n:
                result = {"skipped": f"{n} jobs enqueued, {found} found (someone else used or flushed the db?)"}
        elif op == "fork":
            enqueue(fork_queue, n)
            flush_telemetry()
            found = fork_queue.count
            result = timed(lambda: work(Worker, fork_queue), max(found, 1))
            if found != n:
                result = {"skipped": f"{n} jobs enqueued, {found} found (someone else used or flushed the db?)"}
        else:
            raise ValueError(f"unknown step {op!r}")
        print("RESULT " + json.dumps(result), flush=True)
    return {"done": True}


def phase_enqueue(spec: dict[str, Any], conn: redis.Redis) -> dict[str, Any]:
    enqueue(Queue(spec["queue"], connection=conn), spec["jobs"])
    flush_telemetry()
    return {}


def phase_rss(spec: dict[str, Any], conn: redis.Redis) -> dict[str, Any]:
    queue = Queue(spec["queue"], connection=conn)

    def settled_rss() -> int:
        flush_telemetry()
        gc.collect()
        return rss_bytes()

    SimpleWorker([queue], connection=conn).work(burst=True, logging_level=LOGGING_LEVEL, max_jobs=spec["warm"])
    before = settled_rss()
    measured = queue.count
    SimpleWorker([queue], connection=conn).work(burst=True, logging_level=LOGGING_LEVEL)
    after = settled_rss()
    return {"rss_before": before, "rss_after": after, "jobs": measured - queue.count}


def phase_commands(spec: dict[str, Any], conn: redis.Redis) -> dict[str, Any]:
    queue = Queue(spec["queue"], connection=conn)
    enqueue(queue, spec["jobs"])
    SimpleWorker([queue], connection=conn).work(burst=True, logging_level=LOGGING_LEVEL)
    enqueue(queue, spec["fork_jobs"])
    Worker([queue], connection=conn).work(burst=True, logging_level=LOGGING_LEVEL)
    flush_telemetry()
    return {"jobs": spec["jobs"] + spec["fork_jobs"]}


PHASES = {"throughput": serve_throughput, "enqueue": phase_enqueue, "rss": phase_rss, "commands": phase_commands}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    parent_pid = os.getpid()
    try:
        check = VARIANTS[spec["variant"]](spec)
    except Exception as exc:  # a variant that cannot even start is a row with its error
        result: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}", "stage": "setup"}
    else:
        try:
            with redis.Redis.from_url(spec["redis_url"]) as conn:
                result = PHASES[spec["phase"]](spec, conn)
            problem = check() if check else None
            if problem:
                result = {"error": problem, "stage": "check"}
        except Exception as exc:
            traceback.print_exc()
            result = {"error": f"{type(exc).__name__}: {exc}", "stage": spec["phase"]}
    if os.getpid() == parent_pid:  # never from a work horse
        print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
