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
``perform_started``. For OTLP over gRPC, run workers with
``GRPC_ENABLE_FORK_SUPPORT=false`` (gRPC's fork handlers can crash a horse forked
while an export is in flight).

Nothing clues does can fail a job: its own errors are caught, counted and logged
once per kind.

In a forking ``Worker``, rq sets ``RQ_JOB_ID`` in the worker process for every job,
and glibc keeps every value ever set in the C environment; clues keeps that value
in the worker's ``os.environ`` only (the horse, where the job runs, has it as
usual), so the worker's memory stays flat over millions of jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import get_logger, get_logger_provider
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.metrics import get_meter, get_meter_provider
from wrapt import wrap_function_wrapper

from . import fork_safety, worker_environ
from .abandoned import AbandonedJobHooks
from .config import CluesConfig
from .enqueue_hooks import EnqueueHooks
from .events import SCHEMA_URL
from .flush import flush_all
from .legacy_exporter import LegacyJsonLineExporter
from .legacy_wiring import LegacyOutput, LegacySettings, attach_legacy_output
from .marshaller import json_marshaller
from .metrics import JobMetrics
from .package import _instruments
from .preprocessing import Preprocessing
from .publishers import (
    CompositePublisher,
    EventPublisher,
    LogPublisher,
    StandardOutPublisher,
    TcpPublisher,
    UdpPublisher,
)
from .rq_compat import RQ_CONTROL_FLOW, FailedJobRegistry, Job, Queue, SpawnWorker, Worker, owner_of
from .runtime_metadata import clues_metadata
from .safety import errors
from .telemetry import Telemetry
from .version import __version__
from .worker_hooks import WorkerHooks

_SCOPE = "opentelemetry_instrumentation_clues"

# (class whose MRO owns the method, method name, hook attribute)
_QUEUE_PATCHES = (
    ("enqueue_job", "enqueue_job_entry"),  # outermost: sees sends that fail before _enqueue_job
    ("_enqueue_job", "enqueue_job"),
    ("_enqueue_rate_limited_job", "enqueue_rate_limited_job"),  # rq >= 3
    ("schedule_job", "schedule_job"),
    ("setup_dependencies", "setup_dependencies"),
)
_JOB_PATCHES = (("cancel", "cancel"),)
_REGISTRY_PATCHES = (("requeue", "requeue"),)
_SYNC_QUEUE_PATCHES = (("run_sync", "run_sync"), ("run_job", "run_job"))
_WORKER_PATCHES = (
    ("work", "work"),
    ("dequeue_job_and_maintain_ttl", "dequeue"),
    ("perform_job", "perform_job"),
    ("handle_job_success", "handle_job_success"),
    ("handle_job_failure", "handle_job_failure"),
    ("handle_job_retry", "handle_job_retry"),
    ("fork_work_horse", "fork_work_horse"),
    ("wait_for_horse", "wait_for_horse"),
    ("monitor_work_horse", "monitor_work_horse"),
)


class CluesInstrumentor(BaseInstrumentor):
    """Publishes every RQ job's lifecycle as OpenTelemetry spans, span events and log records."""

    # BaseInstrumentor is a singleton whose __init__ runs on every CluesInstrumentor()
    # call, so state lives in attributes set by _instrument, never in __init__.
    _patched: list[tuple[Any, str]]  # (class or module, attribute)
    _providers: list[Callable[[], Any]]
    _legacy_output: LegacyOutput | None = None
    config: CluesConfig | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        config = CluesConfig.from_kwargs(**kwargs)
        errors.control_flow = RQ_CONTROL_FLOW
        legacy = LegacySettings.from_kwargs(**kwargs)
        tracer_provider = kwargs.get("tracer_provider")
        logger_provider = kwargs.get("logger_provider")
        self._legacy_output = None
        if legacy.publisher is not None:
            self._legacy_output, logger_provider = attach_legacy_output(legacy, logger_provider)
        meter_provider = kwargs.get("meter_provider")
        # schema_url: backends that translate between semconv versions learn which names these are.
        tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider, schema_url=SCHEMA_URL)
        logger = get_logger(_SCOPE, __version__, logger_provider=logger_provider, schema_url=SCHEMA_URL)
        meter = get_meter(_SCOPE, __version__, meter_provider=meter_provider, schema_url=SCHEMA_URL)
        telemetry = Telemetry(tracer, logger, JobMetrics(meter), span_events=config.span_events)
        providers = [
            (lambda: tracer_provider) if tracer_provider else trace.get_tracer_provider,
            (lambda: logger_provider) if logger_provider else get_logger_provider,
        ]
        self.config = config
        fork_safety.watch(providers)
        worker_environ.install()
        self._providers = providers
        preprocessing = None
        if legacy.item_preprocessor is not None:
            preprocessing = Preprocessing(legacy.item_preprocessor, config.preprocessor_timeout_millis / 1000)
        self._patched = []
        enqueue_hooks = EnqueueHooks(telemetry, config, preprocessing)
        self._patch(Queue, _QUEUE_PATCHES, enqueue_hooks)
        self._patch(Job, _JOB_PATCHES, enqueue_hooks)
        self._patch(FailedJobRegistry, _REGISTRY_PATCHES, enqueue_hooks)
        get_meter_provider_in_use = (lambda: meter_provider) if meter_provider else get_meter_provider
        worker_hooks = WorkerHooks(telemetry, config, providers, get_meter_provider_in_use)
        self._patch(Worker, _WORKER_PATCHES, worker_hooks)
        self._patch(Queue, _SYNC_QUEUE_PATCHES, worker_hooks)
        self._patch_abandoned_jobs(AbandonedJobHooks(worker_hooks))
        if "fork_work_horse" in vars(SpawnWorker):
            self._patch(SpawnWorker, (("fork_work_horse", "spawn_work_horse"),), worker_hooks)

    def _patch(self, cls: type, patches: tuple[tuple[str, str], ...], hooks: object) -> None:
        for method, hook in patches:
            if not hasattr(cls, method):
                continue  # an rq version without this path
            owner = owner_of(cls, method)
            wrap_function_wrapper(owner, method, getattr(hooks, hook))
            self._patched.append((owner, method))

    def _patch_abandoned_jobs(self, hooks: AbandonedJobHooks) -> None:
        import rq.registry

        if callable(getattr(rq.registry, "execute_failure_callback", None)):  # rq >= 3
            wrap_function_wrapper(rq.registry, "execute_failure_callback", hooks.module_callback)
            self._patched.append((rq.registry, "execute_failure_callback"))
        else:  # rq 2.x
            owner = owner_of(Job, "execute_failure_callback")
            wrap_function_wrapper(owner, "execute_failure_callback", hooks.job_method)
            self._patched.append((owner, "execute_failure_callback"))

    def _uninstrument(self, **kwargs: Any) -> None:
        fork_safety.watch([])
        worker_environ.uninstall()
        legacy_output, self._legacy_output = self._legacy_output, None
        if legacy_output is not None:
            legacy_output.detach()
        while getattr(self, "_patched", None):
            owner, method = self._patched.pop()
            unwrap(owner, method)

    def force_flush(self, timeout_millis: int = 30_000) -> None:
        """Export what clues has buffered (spans, log records, legacy lines) now, within the timeout."""
        flush_all(getattr(self, "_providers", []), timeout_millis)

    @staticmethod
    def error_counts() -> dict[str, int]:
        """clues' own errors so far (each kind is logged once), by ``place:ExceptionType``."""
        return errors.counts()


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
