"""Consumer side: dequeue in the worker, perform in whichever process performs.

SimpleWorker runs everything in one process and publishes as it goes. The
forking Worker dequeues in the worker and performs in a forked work horse that
ends with ``os._exit``: the worker starts the attempt's ``process`` span before the
fork (the job's own spans nest under it in the horse), the horse reports each
transition over a pipe (:mod:`.horse_reports`), and the worker publishes them while
it waits for the horse. So the horse exports nothing of clues', a horse killed
mid-job has already handed over its ``perform_started``, and the legacy lines of a
job come out of one process, in order.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.instrumentation import attempts, spawn_handoff
from opentelemetry_instrumentation_clues.instrumentation.attempts import Attempt, Stage
from opentelemetry_instrumentation_clues.instrumentation.failures import (
    WORKER_SHUTDOWN,
    current_failure,
    job_should_retry,
    retry_failure,
    returned_retry_will_run,
)
from opentelemetry_instrumentation_clues.instrumentation.horse_channel import HorseChannel
from opentelemetry_instrumentation_clues.instrumentation.horse_reports import HorseReporter, ReportReplay
from opentelemetry_instrumentation_clues.instrumentation.lifecycle import Lifecycle
from opentelemetry_instrumentation_clues.instrumentation.rq_compat import (
    arg,
    stopped_job_id,
    worker_forks,
    worker_is_horse,
)
from opentelemetry_instrumentation_clues.runtime import fork_resources, worker_environ
from opentelemetry_instrumentation_clues.runtime.flush import FlushBudget, flush_all, holds_telemetry
from opentelemetry_instrumentation_clues.runtime.fork_safety import GrpcExports, grpc_exports
from opentelemetry_instrumentation_clues.runtime.safety import Place, call_guarded, errors, guarded
from opentelemetry_instrumentation_clues.telemetry.emitter import Telemetry
from opentelemetry_instrumentation_clues.telemetry.facts import Failure
from opentelemetry_instrumentation_clues.telemetry.metrics import silence_inherited_readers

_logger = logging.getLogger("opentelemetry_instrumentation_clues")
GRPC_FORK_WARNING = (
    "clues: this forking rq worker exports over OTLP/gRPC with gRPC's fork handlers on, through an "
    "exporter too old for clues to move its calls out of the forking process: while an export is in "
    "flight (a slow or hung collector) a fork can crash the work horse before its job runs. "
    "Set GRPC_ENABLE_FORK_SUPPORT=false for rq workers (clues' own telemetry never leaves a horse; "
    "a horse flushes only spans its job made, within its flush budget), "
    "or export with OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf."
)
GRPC_RELAY_NOTICE = (
    "clues: this forking rq worker's OTLP/gRPC exports go through relay process %d, so that it never "
    "forks a work horse inside an RPC (gRPC's fork handlers are on); "
    "GRPC_ENABLE_FORK_SUPPORT=false makes the worker export in-process."
)


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
        self.lifecycle = Lifecycle(telemetry, config)
        self.providers = providers  # flushed by a forked horse (never the meter provider)
        self.meter_provider = meter_provider
        self.flush_budget = FlushBudget(config.flush_timeout_millis)  # the worker's; it decides each horse's
        self.replay = ReportReplay(self.lifecycle, telemetry, self.flush_budget)
        self._reporter: HorseReporter | None = None  # in a forked horse that reports to its worker
        self._following = False  # the worker is inside wait_for_horse, reading reports
        self._grpc: GrpcExports | None = None  # found when a forking worker starts

    # wrapt wrappers -----------------------------------------------------------
    def dequeue(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        result = wrapped(*args, **kwargs)
        if result is not None and is_instrumentation_enabled():
            with guarded(Place.WORKER_DEQUEUED):
                job, queue = result
                attempt = self.lifecycle.begin(job, queue.name, dequeued_ns=time.time_ns())
                attempts.remember(worker, attempt)
                self.lifecycle.dequeued(attempt, job)
        return result

    def work(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """A worker that stops flushes: WorkerPool's workers end without running atexit."""
        with guarded(Place.WORKER_EXPORTERS):
            fork_resources.install()  # the SDK is set up by now, if it was not at instrument()
        if worker_forks(worker) and self._grpc is None:
            with guarded(Place.WORKER_EXPORTERS):
                self._grpc = grpc_exports([*self.providers, self.meter_provider])
                if self._grpc.unrelayable:
                    _logger.warning(GRPC_FORK_WARNING)
                self._relay_grpc()
        try:
            return wrapped(*args, **kwargs)
        finally:
            flush_all([*self.providers, self.meter_provider], self.config.flush_timeout_millis)

    def _relay_grpc(self) -> None:
        """Start the gRPC relay where there are gRPC exports and it does not run; an export in
        flight now defers it to the next fork."""
        if self._grpc is None or not self._grpc.exporters:
            return
        from opentelemetry_instrumentation_clues.runtime import grpc_relay  # imports grpc: only where it is in use

        if grpc_relay.active() is None:
            relay = grpc_relay.ensure_started(self._grpc.exporters, self._grpc.export_locks)
            if relay is not None:
                _logger.info(GRPC_RELAY_NOTICE, relay.pid)

    def perform_job(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        job = arg(args, kwargs, 0, "job")
        queue = arg(args, kwargs, 1, "queue")
        attempt = call_guarded(Place.WORKER_PERFORM_STARTED, self._start_perform, worker, job, queue, default=None)
        try:
            if attempt is None:
                return wrapped(*args, **kwargs)
            with trace.use_span(attempt.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                return wrapped(*args, **kwargs)
        finally:
            if worker_is_horse(worker):
                self._leave_horse(attempt)
            elif attempt is not None:
                with guarded(Place.WORKER_SPAN_END):
                    attempt.end_span()

    def fork_work_horse(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """Open the channel the horse reports through (forking Worker only), and keep rq's
        per-job environment values out of the worker's C environment (see worker_environ)."""
        self._relay_grpc()
        job = arg(args, kwargs, 0, "job")
        attempt = attempts.current(worker, getattr(job, "id", None))
        if attempt is not None:
            with guarded(Place.HORSE_CHANNEL):
                attempt.channel = HorseChannel()
                attempt.flush_millis = self.flush_budget.for_next_horse()
        try:
            with worker_environ.per_job_values_kept_in_python():
                result = wrapped(*args, **kwargs)  # only the parent returns here
        except BaseException:
            if attempt is not None and attempt.channel is not None:  # no horse: nothing will use it
                attempt.channel.close()
                attempt.channel = None
            raise
        if attempt is not None and attempt.channel is not None:
            attempt.channel.parent_side()
        return result

    def spawn_work_horse(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """SpawnWorker.fork_work_horse: the horse learns the attempt from its environment."""
        self._relay_grpc()  # rq 2's os.spawnv forks in Python: gRPC's fork handlers run
        job = arg(args, kwargs, 0, "job")
        attempt = attempts.current(worker, getattr(job, "id", None))
        if attempt is None:
            return wrapped(*args, **kwargs)
        with guarded(Place.HORSE_SPAWN):
            attempt.spawned = True
            spawn_handoff.publish(attempt.job_id, attempt.facts.event_hash, attempt.facts.attempt, attempt.span)
        try:
            return wrapped(*args, **kwargs)
        finally:
            spawn_handoff.withdraw()

    def wait_for_horse(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """While the worker waits for its horse, it publishes what the horse reports.

        rq's monitor interrupts this wait every job_monitoring_interval with its own
        timeout exception (clues lets it through), and a cold shutdown calls it again
        from a signal handler: that nested call only waits."""
        attempt = attempts.held_by(worker)
        channel = attempt.channel if attempt is not None else None
        horse_pid = getattr(worker, "horse_pid", 0)
        if attempt is None or channel is None or self._following or not horse_pid:
            return wrapped(*args, **kwargs)

        deliver = functools.partial(self.replay.deliver, attempt)
        self._following = True
        try:
            with guarded(Place.HORSE_FOLLOW):  # rq's monitor timeout passes through
                channel.follow(horse_pid, deliver)
        finally:
            self._following = False
        result = wrapped(*args, **kwargs)
        with guarded(Place.HORSE_FOLLOW):
            channel.drain(deliver)
        return result

    def monitor_work_horse(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """The worker's side of a forked attempt: what it runs (a stopped job's callback,
        the failure of a killed horse) belongs to the job's trace. When it ends, every
        report has been published and the attempt's span is ended."""
        job = arg(args, kwargs, 0, "job")
        attempt = attempts.current(worker, getattr(job, "id", None))
        if attempt is None:
            return wrapped(*args, **kwargs)
        stopped_by: BaseException | None = None
        try:
            with trace.use_span(attempt.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                return wrapped(*args, **kwargs)
        except BaseException as exc:
            stopped_by = exc  # a cold shutdown (Ctrl-C twice) takes the horse down with the worker
            raise
        finally:
            with guarded(Place.HORSE_END):
                channel, attempt.channel = attempt.channel, None
                if channel is not None:
                    channel.drain(functools.partial(self.replay.deliver, attempt))
                    channel.close()
                if stopped_by is not None:
                    message = f"the worker stopped while the job ran ({type(stopped_by).__name__})"
                    outcome = self.lifecycle.outcome_of(
                        attempt, job, Failure(WORKER_SHUTDOWN, message, "", raised=False), False
                    )
                    self.lifecycle.ended(attempt, outcome)
                attempt.end_span(attempt.horse_done_ns)

    # The outcome is published before rq handles it: handling it may enqueue the job
    # again (a retry, a repeat), and that must come after in the story.
    def handle_job_success(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        job = arg(args, kwargs, 0, "job")
        if self._suppressed(worker, job):
            return wrapped(*args, **kwargs)
        with guarded(Place.WORKER_SUCCESS):
            self._attempt_ended(worker, job, arg(args, kwargs, 1, "queue"), None, will_retry=False)
        return wrapped(*args, **kwargs)

    def handle_job_failure(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        job = arg(args, kwargs, 0, "job")
        if self._suppressed(worker, job):
            return wrapped(*args, **kwargs)
        # Read before rq clears them: the active exception, whether the job was stopped, retries left.
        stopped = job is not None and stopped_job_id(worker) == getattr(job, "id", None)
        failure = call_guarded(
            Place.WORKER_FAILURE, current_failure, arg(args, kwargs, 3, "exc_string"), stopped, default=None
        )
        will_retry = not stopped and call_guarded(Place.WORKER_FAILURE, job_should_retry, job, default=False)
        if failure is not None:
            with guarded(Place.WORKER_FAILURE):
                self._attempt_ended(worker, job, arg(args, kwargs, 1, "queue"), failure, will_retry)
        return wrapped(*args, **kwargs)

    def handle_job_retry(self, wrapped: Callable[..., Any], worker: Any, args: tuple, kwargs: dict) -> Any:
        """A job returned ``Retry``: a failed attempt, retried unless its retries are used up.
        (rq may then also run it through handle_job_failure: the attempt has its outcome already.)"""
        job = arg(args, kwargs, 0, "job")
        if self._suppressed(worker, job):
            return wrapped(*args, **kwargs)
        retry = arg(args, kwargs, 2, "retry")
        with guarded(Place.WORKER_RETRY):
            will_retry = returned_retry_will_run(job, retry)
            self._attempt_ended(worker, job, arg(args, kwargs, 1, "queue"), retry_failure(retry), will_retry)
        return wrapped(*args, **kwargs)

    # Queue(is_async=False): the job runs inside enqueue, in this process ---------
    def run_sync(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        job = arg(args, kwargs, 0, "job")
        attempt = call_guarded(Place.SYNC_BEGIN, self._begin_sync_attempt, queue, job, default=None)
        if attempt is None:
            return wrapped(*args, **kwargs)
        with trace.use_span(attempt.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            try:
                return wrapped(*args, **kwargs)
            finally:
                with guarded(Place.SYNC_END):
                    self._attempt_ended(queue, job, queue, attempt.sync_failure, will_retry=False)
                    attempt.end_span()

    def run_job(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        """Catch the exception a synchronous job raises (run_sync swallows it)."""
        try:
            return wrapped(*args, **kwargs)
        except BaseException:
            with guarded(Place.SYNC_FAILURE):
                job = arg(args, kwargs, 0, "job")
                attempt = attempts.current(queue, getattr(job, "id", None))
                if attempt is not None:
                    attempt.sync_failure = current_failure(None, stopped=False)
            raise

    # Registry clean-up: a job whose worker died ---------------------------------
    def abandoned(self, job: Any, failure: Failure, will_retry: bool) -> None:
        """Its attempt's outcome, published by whichever process cleans up (it holds no attempt)."""
        if not is_instrumentation_enabled():
            return
        attempt = self.lifecycle.begin(job, job.origin, dequeued_ns=None)
        self.lifecycle.ended(attempt, self.lifecycle.outcome_of(attempt, job, failure, will_retry))

    # -------------------------------------------------------------------------
    def _begin_sync_attempt(self, queue: Any, job: Any) -> Attempt:
        attempt = self.lifecycle.begin(job, queue.name, dequeued_ns=time.time_ns())
        attempts.remember(queue, attempt)
        self.lifecycle.dequeued(attempt, job)
        self.lifecycle.started(attempt, time.time_ns(), os.getpid())
        return attempt

    def _start_perform(self, worker: Any, job: Any, queue: Any) -> Attempt | None:
        attempt = attempts.current(worker, job.id)
        if attempt is None:
            if not is_instrumentation_enabled():
                return None
            handoff = spawn_handoff.receive(str(job.id)) if worker_is_horse(worker) else None
            if handoff is not None:
                attempt = self.lifecycle.begin_spawned(job, queue.name, handoff)
            else:  # performing without our dequeue (a custom loop)
                attempt = self.lifecycle.begin(job, queue.name, dequeued_ns=None)
            attempts.remember(worker, attempt)
        if attempt.channel is not None and worker_is_horse(worker):
            self._enter_horse(attempt.channel)
        if attempt.start(time.time_ns(), os.getpid()) and not self._handed_off(attempt, HorseReporter.started):
            self.lifecycle.publish_started(attempt)
        return attempt

    @staticmethod
    def _suppressed(holder: Any, job: Any) -> bool:
        """Inside suppress_instrumentation() clues starts nothing; an attempt it began before
        still gets its outcome."""
        return not is_instrumentation_enabled() and attempts.current(holder, getattr(job, "id", None)) is None

    def _enter_horse(self, channel: HorseChannel) -> None:
        """A forked horse: from now on clues' records and measurements go to the worker."""
        errors.hold_back()  # the worker logs them, once
        self._reporter = reporter = HorseReporter(channel)
        self.telemetry.forward_from_horse(reporter.send)
        silence_inherited_readers(self.meter_provider())

    def _report(self, send: Callable[[HorseReporter], bool]) -> bool:
        """Hand a report to the worker; False when this horse must publish it itself."""
        reporter = self._reporter
        if reporter is None or not send(reporter):
            self.telemetry.forward_from_horse(None)  # publish here from now on; counted by the reporter
            return False
        return True

    def _handed_off(self, attempt: Attempt, send: Callable[..., bool], *args: Any) -> bool:
        """Whether the worker will publish this transition: this process is the attempt's
        forked horse and the report went through."""
        if self._reporter is None or attempt.channel is None or not attempt.performing_here:
            return False
        return self._report(lambda reporter: send(reporter, attempt, *args))

    def _leave_horse(self, attempt: Attempt | None) -> None:
        """Before ``os._exit``: flush only what the horse's SDK holds (the job's own spans,
        a job's enqueues), within the budget the worker gave it, and say goodbye."""
        reporting = self._reporter is not None and attempt is not None and attempt.channel is not None
        providers = list(self.providers)
        if attempt is not None and attempt.spawned:  # a fresh interpreter: its metrics are its own
            providers.append(self.meter_provider)
        budget = attempt.flush_millis if attempt is not None and attempt.flush_millis else self.flush_budget.millis
        flushed: bool | None = None
        if not reporting or call_guarded(Place.FLUSH, holds_telemetry, providers, default=True):
            flushed = flush_all(providers, budget, in_horse=True)
        if reporting:
            self._report(lambda reporter: reporter.done(time.time_ns(), flushed))

    def _attempt_ended(self, holder: Any, job: Any, queue: Any, failure: Failure | None, will_retry: bool) -> None:
        """perform_finished (failure None) or failed: once per attempt, with its metrics."""
        attempt = attempts.current(holder, job.id)
        if attempt is None:
            if failure is None:
                return
            attempt = self.lifecycle.begin(job, getattr(queue, "name", None) or job.origin, dequeued_ns=None)
        if attempt.stage is Stage.ENDED:
            return  # rq ran a returned Retry through its failure path too: the outcome is known
        outcome = self.lifecycle.outcome_of(attempt, job, failure, will_retry)
        if attempt.end() and not self._handed_off(attempt, HorseReporter.ended, outcome):
            self.lifecycle.publish_outcome(attempt, outcome)
