"""Consumer side: dequeue in the worker, perform in whichever process performs.

SimpleWorker runs everything in one process. The forking Worker dequeues in
the parent and performs in a forked work horse that ends with ``os._exit``, so
the horse flushes its telemetry before returning from ``perform_job``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from . import attempts, job_context, spawn_handoff, worker_environ
from .attempts import Attempt
from .config import CluesConfig
from .events import (
    OPERATION_NAME,
    OPERATION_TYPE,
    WILL_RETRY,
    EventType,
    Failure,
    facts_for,
    metadata_attributes,
)
from .failures import current_failure, job_should_retry, retry_failure, returned_retry_will_run
from .flush import FlushBudget, flush_all
from .job_context import JobClues
from .job_trace import carrier_for, new_event_hash, start_continued
from .metrics import HorsePipe, silence_inherited_readers
from .rq_compat import arg, as_epoch_ns, stopped_job_id, worker_is_horse
from .safety import call_guarded, guarded
from .telemetry import Telemetry


class WorkerHooks:
    def __init__(
        self,
        telemetry: Telemetry,
        config: CluesConfig,
        providers: list[Callable[[], Any]],
        meter_provider: Callable[[], Any],
    ) -> None:
        self.telemetry = telemetry
        self.config = config
        self.providers = providers  # flushed by a forked horse (never the meter provider)
        self.meter_provider = meter_provider
        self.flush_budget = FlushBudget(config.flush_timeout_millis)  # the parent's, inherited by horses

    # wrapt wrappers -----------------------------------------------------------
    def dequeue(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        result = wrapped(*args, **kwargs)
        if result is not None:
            with guarded("dequeued"):
                job, queue = result
                attempt = self._begin_attempt(job, queue.name, dequeued_ns=time.time_ns())
                attempts.remember(worker, attempt)
                self._publish_dequeued(job, attempt)
        return result

    def work(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """A worker that stops flushes: WorkerPool's workers end without running atexit."""
        try:
            return wrapped(*args, **kwargs)
        finally:
            flush_all([*self.providers, self.meter_provider], self.config.flush_timeout_millis)

    def perform_job(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        job = arg(args, kwargs, 0, "job")
        queue = arg(args, kwargs, 1, "queue")
        attempt = call_guarded("perform_started", self._start_perform, worker, job, queue, default=None)
        try:
            if attempt is None:
                return wrapped(*args, **kwargs)
            with trace.use_span(attempt.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                return wrapped(*args, **kwargs)
        finally:
            if attempt is not None:
                with guarded("ending the process span"):
                    attempt.end()
            if worker_is_horse(worker):
                providers = self.providers
                if attempt is not None and attempt.spawned:  # a fresh interpreter: its metrics are its own
                    providers = [*providers, self.meter_provider]
                flushed = flush_all(providers, self.flush_budget.millis, in_horse=True)
                self.telemetry.measurements.leave_horse({"flushed": flushed})

    def fork_work_horse(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """Open the pipe the horse sends its measurements through (forking Worker only), and
        keep rq's per-job environment values out of the worker's C environment (see worker_environ)."""
        job = arg(args, kwargs, 0, "job")
        attempt = attempts.current(worker, getattr(job, "id", None))
        if attempt is not None:
            with guarded("opening the work horse pipe"):
                attempt.pipe = HorsePipe()
        try:
            with worker_environ.per_job_values_kept_in_python():
                result = wrapped(*args, **kwargs)  # only the parent returns here
        except BaseException:
            if attempt is not None and attempt.pipe is not None:  # no horse: nothing will use it
                attempt.pipe.close()
                attempt.pipe = None
            raise
        if attempt is not None and attempt.pipe is not None:
            attempt.pipe.parent_side()
        return result

    def spawn_work_horse(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """SpawnWorker.fork_work_horse: the horse learns the attempt from its environment."""
        job = arg(args, kwargs, 0, "job")
        attempt = attempts.current(worker, getattr(job, "id", None))
        if attempt is None:
            return wrapped(*args, **kwargs)
        with guarded("handing the attempt to a spawned horse"):
            attempt.spawned = True
            spawn_handoff.publish(attempt.job_id, attempt.facts.event_hash, attempt.facts.attempt, attempt.span)
        try:
            return wrapped(*args, **kwargs)
        finally:
            spawn_handoff.withdraw()

    def monitor_work_horse(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """The parent's side of a forked attempt: what it runs (a stopped job's callback,
        the failure of a killed horse) belongs to the job's trace; then it collects the
        horse's measurements."""
        job = arg(args, kwargs, 0, "job")
        attempt = attempts.current(worker, getattr(job, "id", None))
        try:
            if attempt is None:
                return wrapped(*args, **kwargs)
            with trace.use_span(attempt.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                return wrapped(*args, **kwargs)
        finally:
            if attempt is not None and attempt.spawned:
                with guarded("ending the process span"):
                    attempt.end()  # the spawned horse could not end the worker's span object
            if attempt is not None and attempt.pipe is not None:
                pipe, attempt.pipe = attempt.pipe, None
                report = self.telemetry.measurements.replay(pipe.read_fd)
                pipe.close()
                if "flushed" in report:
                    self.flush_budget.update(bool(report["flushed"]))

    # The terminal event is published before rq handles the outcome: handling it may
    # enqueue the job again (a retry, a repeat), and that must come after in the story.
    def handle_job_success(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        with guarded("perform_finished"):
            job = arg(args, kwargs, 0, "job")
            self._publish_terminal(worker, job, arg(args, kwargs, 1, "queue"), None, will_retry=False)
        return wrapped(*args, **kwargs)

    def handle_job_failure(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        job = arg(args, kwargs, 0, "job")
        # Read before rq clears them: the active exception, whether the job was stopped, retries left.
        stopped = job is not None and stopped_job_id(worker) == getattr(job, "id", None)
        failure = call_guarded("failed", current_failure, arg(args, kwargs, 3, "exc_string"), stopped, default=None)
        will_retry = not stopped and call_guarded("failed", job_should_retry, job, default=False)
        if failure is not None:
            with guarded("failed"):
                self._publish_terminal(worker, job, arg(args, kwargs, 1, "queue"), failure, will_retry)
        return wrapped(*args, **kwargs)

    def handle_job_retry(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """A job returned ``Retry``: a failed attempt, retried unless its retries are used up."""
        job = arg(args, kwargs, 0, "job")
        retry = arg(args, kwargs, 2, "retry")
        attempt = attempts.current(worker, getattr(job, "id", None))
        if attempt is not None:
            with guarded("failed"):
                attempt.retry_failure = retry_failure(retry)
                attempt.retry_will_retry = returned_retry_will_run(job, retry)
                queue = arg(args, kwargs, 1, "queue")
                self._publish_terminal(worker, job, queue, attempt.retry_failure, attempt.retry_will_retry)
        return wrapped(*args, **kwargs)

    # Queue(is_async=False): the job runs inside enqueue, in this process ---------
    def run_sync(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        job = arg(args, kwargs, 0, "job")
        attempt = call_guarded("dequeued", self._begin_sync_attempt, queue, job, default=None)
        if attempt is None:
            return wrapped(*args, **kwargs)
        with trace.use_span(attempt.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            try:
                return wrapped(*args, **kwargs)
            finally:
                with guarded("ending a synchronous job"):
                    self._publish_terminal(queue, job, queue, attempt.sync_failure, will_retry=False)
                    attempt.end()

    def run_job(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        """Catch the exception a synchronous job raises (run_sync swallows it)."""
        try:
            return wrapped(*args, **kwargs)
        except BaseException:
            with guarded("failed"):
                job = arg(args, kwargs, 0, "job")
                attempt = attempts.current(queue, getattr(job, "id", None))
                if attempt is not None:
                    attempt.sync_failure = current_failure(None, stopped=False)
            raise

    def _begin_sync_attempt(self, queue: Any, job: Any) -> Attempt:
        attempt = self._begin_attempt(job, queue.name, dequeued_ns=time.time_ns())
        attempts.remember(queue, attempt)
        self._publish_dequeued(job, attempt)
        self._start_perform(queue, job, queue)
        return attempt

    # -------------------------------------------------------------------------
    def _begin_attempt(self, job: Any, queue_name: str, dequeued_ns: int | None) -> Attempt:
        start_ns = dequeued_ns or time.time_ns()
        mode = self.config.propagation
        clues = job_context.read(job)
        name = f"process {queue_name}"
        span = start_continued(
            self.telemetry.tracer,
            name,
            SpanKind.CONSUMER,
            clues,
            mode,
            {OPERATION_TYPE: "process", OPERATION_NAME: "process"},
            start_ns,
        )
        if clues is None:
            # Enqueued without clues: the job gets its event_hash here. It is kept in
            # memory only, and saved if rq saves the job again (a retry, say).
            clues = JobClues(event_hash=new_event_hash(span), carrier=carrier_for(span, mode))
        clues.attempt += 1
        job_context.write(job, clues)
        facts = facts_for(job, queue_name, clues, self.config)
        span.set_attributes(facts.base_attributes)
        return Attempt(job_id=str(job.id), facts=facts, span=span, dequeued_ns=dequeued_ns)

    def _begin_spawned_attempt(self, job: Any, queue_name: str, handoff: spawn_handoff.Handoff) -> Attempt:
        parent = propagate.extract(handoff.carrier, context=Context())
        span = self.telemetry.tracer.start_span(
            f"perform {queue_name}", context=parent, attributes={OPERATION_TYPE: "process", OPERATION_NAME: "process"}
        )
        clues = job_context.read(job) or JobClues(event_hash=handoff.event_hash)
        clues.event_hash, clues.attempt = handoff.event_hash, handoff.attempt
        job_context.write(job, clues)
        facts = facts_for(job, queue_name, clues, self.config)
        span.set_attributes(facts.base_attributes)
        return Attempt(job_id=str(job.id), facts=facts, span=span, spawned=True)

    def _publish_dequeued(self, job: Any, attempt: Attempt) -> None:
        assert attempt.dequeued_ns is not None
        enqueued_ns = as_epoch_ns(getattr(job, "enqueued_at", None))
        time_in_queue = (attempt.dequeued_ns - enqueued_ns) / 1e9 if enqueued_ns else None
        self.telemetry.publish(
            EventType.DEQUEUED, attempt.facts, attempt.span, attempt.dequeued_ns, time_in_queue=time_in_queue
        )
        if time_in_queue is not None:
            self.telemetry.record_time_in_queue(attempt.facts, time_in_queue)

    def _start_perform(self, worker: Any, job: Any, queue: Any) -> Attempt:
        attempt = attempts.current(worker, job.id)
        if attempt is None:
            handoff = spawn_handoff.receive(str(job.id)) if worker_is_horse(worker) else None
            if handoff is not None:
                attempt = self._begin_spawned_attempt(job, queue.name, handoff)
            else:  # performing without our dequeue (a custom loop)
                attempt = self._begin_attempt(job, queue.name, dequeued_ns=None)
            attempts.remember(worker, attempt)
        if attempt.pipe is not None and worker_is_horse(worker):
            # A forked horse: measurements go to the parent; inherited readers stay quiet.
            self.telemetry.measurements.enter_horse(attempt.pipe.write_fd)
            silence_inherited_readers(self.meter_provider())
        attempt.performing_pid = os.getpid()
        attempt.perform_started_ns = time.time_ns()
        self.telemetry.publish(EventType.PERFORM_STARTED, attempt.facts, attempt.span, attempt.perform_started_ns)
        return attempt

    def _publish_terminal(self, worker: Any, job: Any, queue: Any, failure: Failure | None, will_retry: bool) -> None:
        """perform_finished (failure None) or failed: once per attempt, with its metrics."""
        attempt = attempts.current(worker, job.id)
        if attempt is None:
            if failure is None:
                return
            attempt = self._begin_attempt(job, getattr(queue, "name", None) or job.origin, dequeued_ns=None)
        if attempt.terminal_published:
            return
        if attempt.retry_failure is not None:  # rq handles a returned Retry through its failure path
            failure, will_retry = attempt.retry_failure, attempt.retry_will_retry
        attempt.terminal_published = True
        end_ns = self._ended_ns(job, attempt)
        time_to_perform = self._time_to_perform(attempt, job, end_ns)
        if failure is None:
            self.telemetry.publish(
                EventType.PERFORM_FINISHED,
                attempt.facts,
                attempt.span,
                end_ns,
                time_to_perform=time_to_perform,
                extra=self._runtime_metadata(job),
            )
            self.telemetry.record_attempt_end(attempt.facts, time_to_perform, "success")
            return
        extra = self._runtime_metadata(job)
        extra[WILL_RETRY] = will_retry
        self.telemetry.publish(
            EventType.FAILED,
            attempt.facts,
            attempt.span,
            end_ns,
            time_to_perform=time_to_perform,
            failure=failure,
            extra=extra,
        )
        self.telemetry.mark_failed(attempt.span, failure)
        self.telemetry.record_attempt_end(
            attempt.facts, time_to_perform, "retried" if will_retry else "failure", failure
        )
        if not attempt.performing_here:
            # The horse died before ending its copy of the span: this process ends it.
            attempt.end(end_ns)

    def _runtime_metadata(self, job: Any) -> dict[str, AttributeValue]:
        """What the job added with clues_metadata() while it ran."""
        clues = job_context.read(job)
        return metadata_attributes(clues.metadata, self.config.max_value_length) if clues else {}

    @staticmethod
    def _ended_ns(job: Any, attempt: Attempt) -> int:
        ended_ns = as_epoch_ns(getattr(job, "ended_at", None))
        # A job fetched again for a later attempt still carries the previous ended_at.
        began_ns = attempt.perform_started_ns or attempt.dequeued_ns or 0
        return ended_ns if ended_ns and ended_ns >= began_ns else time.time_ns()

    @staticmethod
    def _time_to_perform(attempt: Attempt, job: Any, end_ns: int) -> float | None:
        if attempt.perform_started_ns is not None:
            return max(0, end_ns - attempt.perform_started_ns) / 1e9
        started_ns = as_epoch_ns(getattr(job, "started_at", None))
        return max(0, end_ns - started_ns) / 1e9 if started_ns else None
