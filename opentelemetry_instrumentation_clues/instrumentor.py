"""``CluesInstrumentor``: reads the settings, builds the telemetry objects, patches rq, unpatches exactly.

The user documentation is the package docstring (``opentelemetry_instrumentation_clues/__init__.py``).
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

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.instrumentation.abandoned import AbandonedJobHooks
from opentelemetry_instrumentation_clues.instrumentation.enqueue_hooks import EnqueueHooks
from opentelemetry_instrumentation_clues.instrumentation.preprocessing import Preprocessing
from opentelemetry_instrumentation_clues.instrumentation.rq_compat import (
    RQ_CONTROL_FLOW,
    FailedJobRegistry,
    Job,
    Queue,
    SpawnWorker,
    Worker,
    owner_of,
)
from opentelemetry_instrumentation_clues.instrumentation.worker_hooks import WorkerHooks
from opentelemetry_instrumentation_clues.legacy.wiring import LegacyOutput, attach_legacy_output
from opentelemetry_instrumentation_clues.package import _instruments
from opentelemetry_instrumentation_clues.runtime import fork_resources, fork_safety, worker_environ
from opentelemetry_instrumentation_clues.runtime.flush import flush_all
from opentelemetry_instrumentation_clues.runtime.safety import errors
from opentelemetry_instrumentation_clues.telemetry.attributes import SCHEMA_URL
from opentelemetry_instrumentation_clues.telemetry.emitter import Telemetry
from opentelemetry_instrumentation_clues.telemetry.metrics import JobMetrics
from opentelemetry_instrumentation_clues.version import __version__

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
        tracer_provider = kwargs.get("tracer_provider")
        logger_provider = kwargs.get("logger_provider")
        self._legacy_output = None
        if config.legacy_output:
            self._legacy_output, logger_provider = attach_legacy_output(config, logger_provider)
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
        fork_resources.install()
        worker_environ.install()
        self._providers = providers
        preprocessing = None
        if config.item_preprocessor is not None:
            preprocessing = Preprocessing(config.item_preprocessor, config.preprocessor_timeout_millis / 1000)
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
        fork_resources.uninstall()
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
        """clues' own errors so far (each kind is logged once), by ``place:ExceptionType``;
        ``place`` is a value of the closed ``Place`` enum (runtime/safety.py)."""
        return errors.counts()


__all__ = ["CluesInstrumentor"]
