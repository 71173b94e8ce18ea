"""Abandoned jobs: a worker died with the job running, and registry clean-up finds it later.

rq's StartedJobRegistry.cleanup runs the job's failure callback with
``AbandonedJobError`` for each such job, in whichever process cleans up (a
worker's maintenance). That call is the one place every rq version goes
through, so clues publishes the job's ``failed`` there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rq.exceptions import AbandonedJobError

from opentelemetry_instrumentation_clues.instrumentation.failures import job_should_retry
from opentelemetry_instrumentation_clues.instrumentation.rq_compat import arg
from opentelemetry_instrumentation_clues.instrumentation.worker_hooks import WorkerHooks
from opentelemetry_instrumentation_clues.runtime.safety import Place, guarded
from opentelemetry_instrumentation_clues.telemetry.facts import Failure, exception_type_name

ABANDONED_MESSAGE = "job abandoned: its worker died before reporting an outcome"


class AbandonedJobHooks:
    def __init__(self, worker_hooks: WorkerHooks) -> None:
        self.worker_hooks = worker_hooks

    def module_callback(self, wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
        """rq >= 3: ``execute_failure_callback(job, death_penalty_class, *exc_info)``."""
        self._maybe_publish(arg(args, kwargs, 0, "job"), args[2] if len(args) > 2 else None)
        return wrapped(*args, **kwargs)

    def job_method(self, wrapped: Callable[..., Any], job: Any, args: tuple, kwargs: dict) -> Any:
        """rq 2.x: ``job.execute_failure_callback(death_penalty_class, *exc_info)``."""
        self._maybe_publish(job, args[1] if len(args) > 1 else None)
        return wrapped(*args, **kwargs)

    def _maybe_publish(self, job: Any, exc_type: Any) -> None:
        if exc_type is not AbandonedJobError or job is None:
            return
        with guarded(Place.WORKER_ABANDONED):
            failure = Failure(exception_type_name(AbandonedJobError), ABANDONED_MESSAGE, "")
            self.worker_hooks.abandoned(job, failure, job_should_retry(job))
