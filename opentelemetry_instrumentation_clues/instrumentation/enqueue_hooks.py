"""Producer side: every path that puts a job on a queue or a schedule, or takes it off.

``Queue._enqueue_job`` is rq's choke point (enqueue, enqueue_many, dependents,
the scheduler, retries, requeues), ``Queue._enqueue_rate_limited_job`` its rq 3
twin for jobs with a ``rate_limit``, and ``Queue.schedule_job`` takes
enqueue_at / enqueue_in / retry intervals. The clues data is written into
``job.meta`` before rq saves the job, so it rides in the same Redis write.

``Queue.enqueue_job`` (what ``enqueue``/``enqueue_call`` go through) is watched
too: rq talks to Redis there before it reaches the choke point, so a send that
fails early (Redis down) would otherwise leave no trace at all.

Every hook does nothing inside ``suppress_instrumentation()``, as contrib
instrumentations do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from rq.job import JobStatus

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.event_types import EventType
from opentelemetry_instrumentation_clues.instrumentation import job_context
from opentelemetry_instrumentation_clues.instrumentation.job_context import JobClues, facts_for
from opentelemetry_instrumentation_clues.instrumentation.job_trace import (
    carrier_for,
    describe,
    new_event_hash,
    start_continued,
    start_first_send,
)
from opentelemetry_instrumentation_clues.instrumentation.preprocessing import Preprocessing
from opentelemetry_instrumentation_clues.instrumentation.rq_compat import arg, as_epoch_ns, queue_is_async
from opentelemetry_instrumentation_clues.runtime.safety import Place, call_guarded, guarded
from opentelemetry_instrumentation_clues.telemetry.attributes import ERROR_TYPE, start_attributes
from opentelemetry_instrumentation_clues.telemetry.emitter import Telemetry
from opentelemetry_instrumentation_clues.telemetry.facts import JobFacts, exception_type_name


@dataclass(frozen=True)
class _Operation:
    """One producer operation: its span name prefix, ``messaging.operation.type`` and ``.name``.

    The span name is ``{operation.name} {queue}`` (messaging semconv), so the three always agree.
    """

    type: str
    name: str
    kind: SpanKind = SpanKind.PRODUCER


_SEND = _Operation("send", "send")
_SCHEDULE = _Operation("create", "schedule")  # enqueue_at / enqueue_in / retry interval: not on a queue yet
_DEFER = _Operation("create", "defer")  # waits for its dependencies: not on a queue yet
_CANCEL = _Operation("settle", "cancel", SpanKind.CLIENT)  # taken off for good

_OPERATIONS = {EventType.ENQUEUED: _SEND, EventType.SCHEDULED: _SCHEDULE, EventType.DEFERRED: _DEFER}


@dataclass
class _Send:
    span: Span
    facts: JobFacts
    event_type: EventType


class _Watch:
    """What happened inside one ``Queue.enqueue_job`` call: did any hook begin a span for it?"""

    began = False


_WATCH: ContextVar[_Watch | None] = ContextVar("clues_enqueue_watch", default=None)
# Set while FailedJobRegistry.requeue runs: the failed attempt was never saved in job.meta.
_REQUEUING_FAILED: ContextVar[bool] = ContextVar("clues_requeuing_failed", default=False)


class EnqueueHooks:
    def __init__(self, telemetry: Telemetry, config: CluesConfig, preprocessing: Preprocessing | None) -> None:
        self.telemetry = telemetry
        self.config = config
        self.preprocessing = preprocessing

    # wrapt wrappers -----------------------------------------------------------
    def enqueue_job(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        """``Queue._enqueue_job``: the job goes on the queue now."""
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        job = arg(args, kwargs, 0, "job")
        send = call_guarded(Place.ENQUEUE_BEGIN, self._begin, queue, job, EventType.ENQUEUED, default=None)
        if send is None:
            return wrapped(*args, **kwargs)
        if not queue_is_async(queue):
            # A synchronous queue runs the job inside this call: publish first.
            self._finish(send, job)
            return wrapped(*args, **kwargs)
        return self._run(wrapped, args, kwargs, send, job)

    def enqueue_rate_limited_job(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        """``Queue._enqueue_rate_limited_job`` (rq 3): accepted now, on the queue once a slot is free.

        rq promotes a waiting job later inside a Lua script, out of reach of any hook, so the
        job's send is this call: its ``dequeued`` then carries the wait for a slot in
        time_in_queue (measured from rq's ``enqueued_at``, set at promotion).
        """
        return self.enqueue_job(wrapped, queue, args, kwargs)

    def enqueue_job_entry(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        """``Queue.enqueue_job``: the outermost rq method of enqueue/enqueue_call.

        rq writes to Redis here before it reaches ``_enqueue_job``; when that write fails,
        no inner hook ran, and the failed send is recorded here. rq's exception reaches
        the caller unchanged.
        """
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        watch = _Watch()
        token = _WATCH.set(watch)
        try:
            return wrapped(*args, **kwargs)
        except BaseException as exc:
            if not watch.began:
                job = arg(args, kwargs, 0, "job")
                call_guarded(Place.ENQUEUE_ERROR, self._record_failed_send, queue, job, exc, default=None)
            raise
        finally:
            _WATCH.reset(token)

    def setup_dependencies(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        """A job with dependencies: the trace starts here, before rq saves it as deferred."""
        job = arg(args, kwargs, 0, "job")
        if not getattr(job, "_dependency_ids", None) or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)  # most jobs: nothing to wait for
        if job_context.read(job) is not None:
            return wrapped(*args, **kwargs)
        send = call_guarded(Place.ENQUEUE_BEGIN, self._begin, queue, job, EventType.DEFERRED, default=None)
        if send is None:
            return wrapped(*args, **kwargs)
        result = self._run(wrapped, args, kwargs, send, job, publish=False)
        with guarded(Place.ENQUEUE_FINISH, EventType.DEFERRED.value):
            if job.get_status(refresh=False) == JobStatus.DEFERRED:
                self._finish(send, job)
            else:  # nothing to wait for: rq enqueues it now, and that send span carries on
                send.span.end()
        return result

    def schedule_job(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        job = arg(args, kwargs, 0, "job")
        send = call_guarded(Place.ENQUEUE_BEGIN, self._begin, queue, job, EventType.SCHEDULED, default=None)
        if send is None:
            return wrapped(*args, **kwargs)
        return self._run(wrapped, args, kwargs, send, job)

    def requeue(self, wrapped: Callable[..., Any], registry: Any, args: tuple, kwargs: dict) -> Any:
        """``BaseRegistry.requeue`` (``Job.requeue``, ``requeue_job``, ``rq requeue``).

        A job in the FailedJobRegistry ran after its last send, but rq saves a failure
        without ``job.meta``: the attempt counted at dequeue was never stored. The send
        that requeues it counts that attempt back in, so the next one is attempt 2, not 1.
        """
        from rq.registry import FailedJobRegistry

        if not is_instrumentation_enabled() or not isinstance(registry, FailedJobRegistry):
            return wrapped(*args, **kwargs)
        token = _REQUEUING_FAILED.set(True)
        try:
            return wrapped(*args, **kwargs)
        finally:
            _REQUEUING_FAILED.reset(token)

    def cancel(self, wrapped: Callable[..., Any], job: Any, args: tuple, kwargs: dict) -> Any:
        """``Job.cancel``: the job will never run; ``canceled`` ends its story."""
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        send = call_guarded(Place.CANCEL_BEGIN, self._begin_cancel, job, default=None)
        if send is None:
            return wrapped(*args, **kwargs)
        return self._run(wrapped, args, kwargs, send, job)

    # -------------------------------------------------------------------------
    def _run(
        self, wrapped: Callable[..., Any], args: tuple, kwargs: dict, send: _Send, job: Any, publish: bool = True
    ) -> Any:
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            with guarded(Place.ENQUEUE_ERROR):
                self._fail(send, exc)
            raise
        if publish:
            self._finish(send, job)
        return result

    def _fail(self, send: _Send, exc: BaseException) -> None:
        """The operation raised: the span says so, and a failed send is counted with its error.type."""
        error_type = exception_type_name(type(exc))
        send.span.set_attribute(ERROR_TYPE, error_type)
        send.span.set_status(Status(StatusCode.ERROR, str(exc)[:256]))
        send.span.end()
        if send.event_type is EventType.ENQUEUED:
            self.telemetry.count_sent(send.facts, error_type)

    def _record_failed_send(self, queue: Any, job: Any, exc: BaseException) -> None:
        send = self._begin(queue, job, EventType.ENQUEUED)
        self._fail(send, exc)

    def _begin(self, queue: Any, job: Any, event_type: EventType) -> _Send:
        start_ns = time.time_ns()
        watch = _WATCH.get()
        if watch is not None:
            watch.began = True
        operation = _OPERATIONS[event_type]
        name = f"{operation.name} {queue.name}"
        # Given to start_span, so that samplers can decide on them.
        span_attributes = _start_attributes(operation, queue.name, job)
        mode = self.config.propagation
        clues = job_context.read(job)
        if clues is None:
            span, event_hash = start_first_send(self.telemetry.tracer, name, mode, span_attributes, start_ns)
            clues = JobClues(event_hash=event_hash)
            if self.preprocessing is not None:
                clues.metadata = self.preprocessing.metadata_for(queue.name, job)
        else:
            span = start_continued(self.telemetry.tracer, name, operation.kind, clues, mode, span_attributes, start_ns)
            if _REQUEUING_FAILED.get() and clues.attempt == (clues.sent_at_attempt or 0):
                clues.attempt += 1  # the failed attempt, lost with rq's meta-less save of the failure
        clues.sent_at_attempt = clues.attempt
        clues.carrier = carrier_for(span, mode)
        job_context.write(job, clues)
        # The log record and the metrics need the facts whether or not the span is sampled.
        facts = facts_for(job, queue.name, clues, self.config)
        with guarded(Place.ENQUEUE_BEGIN, "span attributes"):
            describe(span, facts)
        return _Send(span, facts, event_type)

    def _begin_cancel(self, job: Any) -> _Send:
        start_ns = time.time_ns()
        queue_name = str(getattr(job, "origin", "") or "")
        name = f"{_CANCEL.name} {queue_name}"
        clues = job_context.read(job)
        span = start_continued(
            self.telemetry.tracer,
            name,
            _CANCEL.kind,
            clues,
            self.config.propagation,
            _start_attributes(_CANCEL, queue_name, job),
            start_ns,
        )
        if clues is None:  # enqueued without clues: its story is this one event
            clues = JobClues(event_hash=new_event_hash(span))
        facts = facts_for(job, queue_name, clues, self.config)
        with guarded(Place.CANCEL_BEGIN, "span attributes"):
            describe(span, facts)
        return _Send(span, facts, EventType.CANCELED)

    def _finish(self, send: _Send, job: Any) -> None:
        with guarded(Place.ENQUEUE_FINISH, send.event_type._value_):  # not .value: a descriptor call
            now_ns = time.time_ns()
            enqueued_ns = None
            if send.event_type is EventType.ENQUEUED:
                enqueued_ns = as_epoch_ns(getattr(job, "enqueued_at", None))
            self.telemetry.publish(send.event_type, send.facts, send.span, enqueued_ns or now_ns)
            if send.event_type is EventType.ENQUEUED:
                self.telemetry.count_sent(send.facts)
            send.span.end(end_time=max(now_ns, enqueued_ns or 0))


def _start_attributes(operation: _Operation, queue_name: str, job: Any) -> dict[str, AttributeValue]:
    return start_attributes(operation.type, operation.name, queue_name, str(job.id))
