"""Producer side: every path that puts a job on a queue or a schedule.

``Queue._enqueue_job`` is rq's choke point (enqueue, enqueue_many, dependents,
the scheduler, retries, requeues) and ``Queue.schedule_job`` takes
enqueue_at / enqueue_in / retry intervals. The clues data is written into
``job.meta`` before rq saves the job, so it rides in the same Redis write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.util.types import AttributeValue
from rq.job import JobStatus

from . import job_context
from .config import CluesConfig
from .events import OPERATION_NAME, OPERATION_TYPE, EventType, JobFacts, facts_for
from .job_context import JobClues
from .job_trace import carrier_for, start_continued, start_first_send
from .preprocessing import Preprocessing
from .rq_compat import arg, as_epoch_ns, queue_is_async
from .safety import call_guarded, guarded
from .telemetry import Telemetry


@dataclass
class _Send:
    span: Span
    facts: JobFacts
    event_type: EventType


class EnqueueHooks:
    def __init__(self, telemetry: Telemetry, config: CluesConfig, preprocessing: Preprocessing | None) -> None:
        self.telemetry = telemetry
        self.config = config
        self.preprocessing = preprocessing

    # wrapt wrappers -----------------------------------------------------------
    def enqueue_job(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        job = arg(args, kwargs, 0, "job")
        send = call_guarded("enqueued", self._begin, queue, job, EventType.ENQUEUED, default=None)
        if send is None:
            return wrapped(*args, **kwargs)
        if not queue_is_async(queue):
            # A synchronous queue runs the job inside this call: publish first.
            self._finish(send, job)
            return wrapped(*args, **kwargs)
        return self._run(wrapped, args, kwargs, send, job)

    def setup_dependencies(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        """A job with dependencies: the trace starts here, before rq saves it as deferred."""
        job = arg(args, kwargs, 0, "job")
        if not getattr(job, "_dependency_ids", None) or job_context.read(job) is not None:
            return wrapped(*args, **kwargs)
        send = call_guarded("deferred", self._begin, queue, job, EventType.DEFERRED, default=None)
        if send is None:
            return wrapped(*args, **kwargs)
        result = self._run(wrapped, args, kwargs, send, job, publish=False)
        with guarded("deferred"):
            if job.get_status(refresh=False) == JobStatus.DEFERRED:
                self._finish(send, job)
            else:  # nothing to wait for: rq enqueues it now, and that send span carries on
                send.span.end()
        return result

    def schedule_job(self, wrapped: Callable[..., Any], queue: Any, args: tuple, kwargs: dict) -> Any:
        job = arg(args, kwargs, 0, "job")
        send = call_guarded("scheduled", self._begin, queue, job, EventType.SCHEDULED, default=None)
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
            with guarded("enqueue error"):
                send.span.set_status(Status(StatusCode.ERROR, str(exc)[:256]))
                send.span.set_attribute("error.type", type(exc).__qualname__)
                send.span.end()
            raise
        if publish:
            self._finish(send, job)
        return result

    def _begin(self, queue: Any, job: Any, event_type: EventType) -> _Send:
        start_ns = time.time_ns()
        scheduled = event_type is not EventType.ENQUEUED  # scheduled or deferred: created, not yet queued
        name = f"{'schedule' if event_type is EventType.SCHEDULED else 'send'} {queue.name}"
        span_attributes: dict[str, AttributeValue] = {
            OPERATION_TYPE: "create" if scheduled else "send",
            OPERATION_NAME: name.split()[0],
        }
        mode = self.config.propagation
        clues = job_context.read(job)
        if clues is None:
            span, event_hash = start_first_send(self.telemetry.tracer, name, mode, span_attributes, start_ns)
            clues = JobClues(event_hash=event_hash)
            if self.preprocessing is not None:
                clues.metadata = self.preprocessing.metadata_for(queue.name, job)
        else:
            span = start_continued(
                self.telemetry.tracer, name, SpanKind.PRODUCER, clues, mode, span_attributes, start_ns
            )
        clues.carrier = carrier_for(span, mode)
        job_context.write(job, clues)
        facts = facts_for(job, queue.name, clues, self.config)
        with guarded("send span attributes"):
            span.set_attributes(facts.base_attributes)
        return _Send(span, facts, event_type)

    def _finish(self, send: _Send, job: Any) -> None:
        with guarded(send.event_type.value):
            now_ns = time.time_ns()
            enqueued_ns = None
            if send.event_type is EventType.ENQUEUED:
                enqueued_ns = as_epoch_ns(getattr(job, "enqueued_at", None))
            self.telemetry.publish(send.event_type, send.facts, send.span, enqueued_ns or now_ns)
            if send.event_type is not EventType.DEFERRED:  # counted when rq really enqueues it
                operation = "schedule" if send.event_type is EventType.SCHEDULED else "send"
                self.telemetry.count_sent(send.facts, operation)
            send.span.end(end_time=max(now_ns, enqueued_ns or 0))
