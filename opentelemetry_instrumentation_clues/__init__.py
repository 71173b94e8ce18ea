"""
Job-lifecycle observability for `RQ <https://python-rq.org>`_ on OpenTelemetry,
a Python port of the Ruby gem resque-clues.

Every RQ job publishes its lifecycle — ``enqueued``, ``dequeued``,
``perform_started``, then ``perform_finished`` or ``failed`` (plus ``scheduled``
for ``enqueue_at``/``enqueue_in``, ``deferred`` for a job waiting on its
dependencies and ``canceled`` for ``Job.cancel``, which ends the job's story) —
as span events on the job's trace and as
OpenTelemetry log records, with the event_hash, worker_class (the job's
callable), queue, timestamp, hostname and pid where the event happened, the
job's args and kwargs, ``time_in_queue`` on ``dequeued``, ``time_to_perform`` on
``perform_finished``/``failed`` and the exception type, message and stack trace
on ``failed``.

Usage
-----

With no code change::

    opentelemetry-instrument rq worker my_queue

and the producer likewise (``opentelemetry-instrument python app.py``). In code:

.. code-block:: python

    from opentelemetry_instrumentation_clues import CluesInstrumentor

    CluesInstrumentor().instrument()  # before any job is enqueued or worked

``instrument()`` accepts:

* ``tracer_provider``, ``logger_provider``, ``meter_provider``: default to the
  global providers (what ``opentelemetry-instrument`` configures).
* ``propagation``: ``"link"`` (default: each job is its own trace, whose trace
  id is the event_hash; the enqueuing span is linked), ``"child"`` (the job
  joins the enqueuing trace) or ``"none"``. Env: ``OTEL_PYTHON_CLUES_PROPAGATION``.
* ``capture_args`` (default true; env ``OTEL_PYTHON_CLUES_CAPTURE_ARGS``) and
  ``max_value_length`` (default 2048; env ``OTEL_PYTHON_CLUES_MAX_VALUE_LENGTH``):
  whether and how much of a job's arguments go into events. Values are cut structurally: the JSON
  stays valid, with a marker where it was cut. The same limit bounds ``exception.message``.
* ``max_stacktrace_length`` (default 16384; env ``OTEL_PYTHON_CLUES_MAX_STACKTRACE_LENGTH``):
  longest ``exception.stacktrace``; a longer one keeps both ends and drops the middle.
* ``redact_kwargs`` (env ``OTEL_PYTHON_CLUES_REDACT_KWARGS``, comma-separated; default password,
  passwd, token, secret, api_key, apikey, authorization, auth, credentials, private_key): values
  under matching keys — kwargs and dict keys nested anywhere in args/kwargs — become
  ``"[REDACTED]"``. Case and ``_ - .`` are ignored; patterns shorter than 5 chars must be a whole
  word. A list replaces the default; ``[]`` / ``none`` turns redaction off.
* ``args_sanitizer`` (env ``OTEL_PYTHON_CLUES_ARGS_SANITIZER=package.module:function``):
  ``sanitizer(func_name, args, kwargs) -> (args, kwargs)``, applied before redaction, once per job
  and process; if it raises, the arguments are withheld and the error is logged once.
* ``args_repr`` (default false; env ``OTEL_PYTHON_CLUES_ARGS_REPR``): arguments without a JSON
  form are shown by type name (``<app.models.Invoice>``) and none of their code runs; true shows
  them by ``repr()``, run off the enqueuing/working thread with a 200 ms limit per job.
* ``span_events`` (default true; env ``OTEL_PYTHON_CLUES_SPAN_EVENTS``): each lifecycle event is a
  span event as well as a log record; false writes the log records only, for those who follow
  OpenTelemetry's deprecation of the span event API (OTEP 4430). Spans, their status and the
  legacy output are unchanged.
* ``event_publisher``, ``event_marshaller``, ``item_preprocessor`` (env
  ``OTEL_PYTHON_CLUES_PUBLISHER``, ``…_EVENT_MARSHALLER``, ``…_ITEM_PREPROCESSOR``): the seed's
  JSON-line output, e.g. ``instrument(event_publisher=LogPublisher("/var/log/rq-clues.log"))``.
* ``flush_timeout_millis`` (default 2000; env
  ``OTEL_PYTHON_CLUES_FLUSH_TIMEOUT_MILLIS``): how long a forked work horse may
  spend flushing the spans its job made itself before it exits (50 ms while such
  flushes time out, with a full-length try every 10 s).

Each job is one trace: ``send {queue}`` (PRODUCER) at enqueue, then one
``process {queue}`` (CONSUMER) span per attempt, under which the job's own spans
nest. The trace context travels in ``job.meta["clues"]``, in the same Redis write
as the job, through the global propagator (``OTEL_PROPAGATORS``).

Under ``opentelemetry-instrument``, ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=clues``
leaves clues out. Inside ``suppress_instrumentation()`` clues publishes nothing for
the jobs enqueued, canceled or performed there (no span, log record or count).

With the forking ``Worker``, the worker starts each attempt's ``process`` span
before it forks; the work horse reports what happens (``perform_started``, the
outcome, its measurements) over a pipe, and the worker publishes it: the horse
exports nothing of clues', and a horse killed mid-job has already reported
``perform_started``. With OTLP over gRPC and gRPC's fork handlers on (the default),
a forking worker makes its RPCs in one relay process, so it never forks a horse
while an RPC is in flight (gRPC's handlers can crash such a child);
``GRPC_ENABLE_FORK_SUPPORT=false`` turns the handlers off and the worker exports
in-process.

Nothing clues does can fail a job: its own errors are caught, counted and logged
once per kind.

In a forking ``Worker``, rq sets ``RQ_JOB_ID`` in the worker process for every job,
and glibc keeps every value ever set in the C environment; clues keeps that value
in the worker's ``os.environ`` only (the horse, where the job runs, has it as
usual), so the worker's memory stays flat over millions of jobs.

In every forked process the OpenTelemetry SDK (1.45) renews the resource attributes
that name the process (``service.instance.id``) through a thread pool, about a
millisecond of every forked job; while clues is instrumented the same detectors run
in the forking thread instead, with the same result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry_instrumentation_clues.version import __version__

if TYPE_CHECKING:
    from opentelemetry_instrumentation_clues.instrumentation.runtime_metadata import clues_metadata
    from opentelemetry_instrumentation_clues.instrumentor import CluesInstrumentor
    from opentelemetry_instrumentation_clues.legacy.exporter import LegacyJsonLineExporter
    from opentelemetry_instrumentation_clues.legacy.marshaller import json_marshaller
    from opentelemetry_instrumentation_clues.legacy.publishers import (
        CompositePublisher,
        EventPublisher,
        LogPublisher,
        StandardOutPublisher,
        TcpPublisher,
        UdpPublisher,
    )

# Public names, imported when first used: ``clues stats|trace|tail`` import this package without
# OpenTelemetry or rq installed (``opentelemetry_instrumentation_clues.cli`` needs neither).
_LAZY = {
    "CluesInstrumentor": "opentelemetry_instrumentation_clues.instrumentor",
    "CompositePublisher": "opentelemetry_instrumentation_clues.legacy.publishers",
    "EventPublisher": "opentelemetry_instrumentation_clues.legacy.publishers",
    "LegacyJsonLineExporter": "opentelemetry_instrumentation_clues.legacy.exporter",
    "LogPublisher": "opentelemetry_instrumentation_clues.legacy.publishers",
    "StandardOutPublisher": "opentelemetry_instrumentation_clues.legacy.publishers",
    "TcpPublisher": "opentelemetry_instrumentation_clues.legacy.publishers",
    "UdpPublisher": "opentelemetry_instrumentation_clues.legacy.publishers",
    "clues_metadata": "opentelemetry_instrumentation_clues.instrumentation.runtime_metadata",
    "json_marshaller": "opentelemetry_instrumentation_clues.legacy.marshaller",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "CluesInstrumentor",
    "CompositePublisher",
    "EventPublisher",
    "LegacyJsonLineExporter",
    "LogPublisher",
    "StandardOutPublisher",
    "TcpPublisher",
    "UdpPublisher",
    "__version__",
    "clues_metadata",
    "json_marshaller",
]
