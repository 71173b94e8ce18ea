"""``clues monitor``: queue health (jobs by status, oldest waiting job, workers) as OTel metrics.

Lifecycle events say nothing when things are worst: no worker running, a queue filling up, a job
stuck for an hour. This long-running process reads RQ's state from Redis once per metric
collection (snapshot.py) and exports three observable gauges (gauges.py) through
the standard SDK configuration, so it goes wherever the workers' metrics go.

Exit codes: 0 after SIGTERM/SIGINT (and a final export); 2 when Redis is unreachable at start or
the exporter configuration is invalid. The command line is defined in cli/, which imports this
module only when ``clues monitor`` runs (the analysis commands stay standard-library only).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk._configuration import _get_exporter_entry_point, _import_exporters
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from redis import Redis
from redis.exceptions import RedisError

from opentelemetry_instrumentation_clues.monitor.gauges import SharedSnapshot, register_gauges
from opentelemetry_instrumentation_clues.monitor.snapshot import SnapshotReader
from opentelemetry_instrumentation_clues.version import __version__

PROG = "clues monitor"
EXIT_OK = 0
EXIT_USAGE = 2
DEFAULT_SERVICE_NAME = "rq-monitor"
#: The same instrumentation scope as the per-job metrics: one package, one scope.
SCOPE = "opentelemetry_instrumentation_clues"
#: Each Redis call may take this long before the collection gives up on it (an outage must not
#: stall the exporter thread).
REDIS_TIMEOUT_SECONDS = 5.0

_log = logging.getLogger("opentelemetry_instrumentation_clues.monitor")


def metric_readers() -> list[MetricReader]:
    """Readers for ``OTEL_METRICS_EXPORTER`` (default ``otlp``; ``none`` for no export), built from
    the exporters' entry points as ``opentelemetry-instrument`` does. Push exporters get a
    PeriodicExportingMetricReader, which reads OTEL_METRIC_EXPORT_INTERVAL itself."""
    names = os.environ.get("OTEL_METRICS_EXPORTER", "otlp").strip()
    if names.lower() in ("", "none"):
        return []
    entry_points = [_get_exporter_entry_point(name.strip(), "metrics") for name in names.split(",")]
    _, exporters, _ = _import_exporters([], entry_points, [])
    readers: list[MetricReader] = []
    for exporter_or_reader in exporters.values():
        if issubclass(exporter_or_reader, MetricReader):
            readers.append(exporter_or_reader())
        else:
            readers.append(PeriodicExportingMetricReader(exporter_or_reader()))
    return readers


def resource() -> Resource:
    """OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES as usual; ``rq-monitor`` when neither names it."""
    detected = Resource.create()
    if "OTEL_SERVICE_NAME" in os.environ or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        return detected
    return detected.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))


def connect(url: str) -> Redis:
    return Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS)


#: Signals that end the monitor (after a final export).
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block SIGTERM/SIGINT in this thread and every thread started inside (threads inherit the
    mask), so the main thread can take them with ``sigwait``.

    Why not a handler that sets a ``threading.Event``: a second signal landing while the main
    thread holds the event's lock (it had just woken from the first) deadlocks in the handler.
    A signal that arrives during the final export stays pending and is consumed here, so it
    cannot kill the process once the old mask is back.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        while signal.sigpending() & STOP_SIGNALS:
            signal.sigwait(STOP_SIGNALS)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def cmd_monitor(args: argparse.Namespace) -> int:
    url = args.redis_url or os.environ.get("RQ_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://localhost:6379"
    connection = connect(url)
    try:
        connection.ping()
    except RedisError as exc:
        print(f"{PROG}: error: cannot reach Redis at {url}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with stop_signals_blocked():  # before the readers start their threads
        try:
            readers = metric_readers()
        except (RuntimeError, ValueError) as exc:  # an unknown exporter name or OTLP protocol
            print(f"{PROG}: error: OTEL_METRICS_EXPORTER: {exc}", file=sys.stderr)
            return EXIT_USAGE
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        provider = MeterProvider(resource=resource(), metric_readers=readers)
        shared = SharedSnapshot(SnapshotReader(connection, args.queues).read)
        register_gauges(provider.get_meter(SCOPE, __version__), shared)
        queues = ", ".join(args.queues) if args.queues else "every queue in rq:queues"
        _log.info("clues monitor: watching %s at %s; exporters: %s", queues, url, len(readers) or "none")
        try:
            signal.sigwait(STOP_SIGNALS)
        finally:
            provider.shutdown()  # collects and exports one last time
            connection.close()
    return EXIT_OK


__all__ = ["cmd_monitor", "metric_readers", "resource"]
