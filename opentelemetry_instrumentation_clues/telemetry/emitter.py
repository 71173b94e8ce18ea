"""Publishes lifecycle events: one span event and one OTel log record each, plus the job metrics.

The log record is self-contained (every field of the event); the span event
carries only what the event adds, since its span already has the job's fields.

Inside a forked work horse (:meth:`Telemetry.forward_from_horse`) log records and
measurements are not handed to the horse's SDK: they are forwarded to the worker,
which emits them in the order they happened and exports them in the background.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.context import Context, get_current
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags, Tracer
from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_clues.event_types import EVENT_NAME_PREFIX, EventType
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors, guarded
from opentelemetry_instrumentation_clues.telemetry.attributes import ERROR_TYPE, OPERATION_NAME
from opentelemetry_instrumentation_clues.telemetry.facts import Failure, JobFacts
from opentelemetry_instrumentation_clues.telemetry.metrics import (
    CONSUMED,
    OUTCOME,
    PROCESS_DURATION,
    SENT,
    TIME_IN_QUEUE,
    JobMetrics,
)

Forward = Callable[[dict[str, Any]], bool]  # False: not forwarded, emit here
_SEVERITY = {severity.value: (severity, severity.name) for severity in SeverityNumber}  # Enum.name is a descriptor call
_INFO, _ERROR = SeverityNumber.INFO.value, SeverityNumber.ERROR.value


class Telemetry:
    """The tracer and logger clues writes through, plus the event publishing rule."""

    def __init__(self, tracer: Tracer, logger: Logger, metrics: JobMetrics, *, span_events: bool = True) -> None:
        self.tracer = tracer
        self.logger = logger
        self.metrics = metrics
        self.span_events = span_events  # False: log records only (OTEP 4430 deprecates span events)
        self._horse_pid: int | None = None
        self._forward: Forward | None = None
        self._last_context: tuple[Span, Context, Context] | None = None

    def context_of(self, span: Span) -> Context:
        """The current context with ``span`` in it; made once for consecutive calls with one
        span in one current context (an attempt's events and metrics: five per job)."""
        current = get_current()
        last = self._last_context
        if last is not None and last[0] is span and last[1] is current:
            return last[2]
        context = trace.set_span_in_context(span, current)
        self._last_context = (span, current, context)
        return context

    # In a forked work horse ------------------------------------------------------
    def forward_from_horse(self, forward: Forward | None) -> None:
        """From now on, in this process, hand log records and measurements to ``forward``
        (None: emit them here again, as when the hand-off to the worker failed)."""
        self._horse_pid, self._forward = os.getpid(), forward

    def _forwarding(self) -> Forward | None:
        """Where this process hands its records and measurements, if it is a reporting horse."""
        forward = self._forward
        return forward if forward is not None and self._horse_pid == os.getpid() else None

    # Metrics -------------------------------------------------------------------
    def _record(
        self, name: str, value: float, attributes: dict[str, AttributeValue], context: Context | None = None
    ) -> None:
        try:
            forward = self._forwarding()
            if forward is not None and forward({"t": "m", "n": name, "v": value, "a": attributes}):
                return
            self.metrics.record(name, value, attributes, context)
        except Exception as exc:  # not `guarded`: this runs several times per job
            errors.swallow(Place.METRIC, exc)

    def record_forwarded(self, report: dict[str, Any]) -> None:
        """In the worker: a measurement a horse forwarded."""
        self.metrics.record(str(report["n"]), float(report["v"]), dict(report["a"]))

    def count_sent(self, facts: JobFacts, error_type: str | None = None) -> None:
        """messaging.client.sent.messages counts sends only: a scheduled or deferred job is
        counted when rq really puts it on a queue (that is a send of its own)."""
        attributes = {**facts.metric_attributes, OPERATION_NAME: "send"}
        if error_type is not None:
            attributes[ERROR_TYPE] = error_type
        self._record(SENT, 1, attributes)

    def record_time_in_queue(self, facts: JobFacts, seconds: float, span: Span) -> None:
        context = self.context_of(span)
        self._record(TIME_IN_QUEUE, max(0.0, seconds), facts.metric_attributes, context)

    def record_attempt_end(
        self, facts: JobFacts, span: Span, time_to_perform: float | None, outcome: str, failure: Failure | None = None
    ) -> None:
        attributes = {**facts.metric_attributes, OPERATION_NAME: "process", OUTCOME: outcome}
        if failure is not None:
            attributes[ERROR_TYPE] = failure.type
        context = self.context_of(span)  # exemplars lead to the job's trace
        self._record(CONSUMED, 1, attributes, context)
        if time_to_perform is not None:
            self._record(PROCESS_DURATION, max(0.0, time_to_perform), attributes, context)

    # Events --------------------------------------------------------------------
    def publish(
        self,
        event_type: EventType,
        facts: JobFacts,
        span: Span,
        timestamp_ns: int,
        *,
        pid: int | None = None,
        time_in_queue: float | None = None,
        time_to_perform: float | None = None,
        failure: Failure | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        own = facts.own_attributes(
            event_type,
            pid=pid,
            time_in_queue=time_in_queue,
            time_to_perform=time_to_perform,
            failure=failure,
            extra=extra,
        )
        name = event_type._value_  # the plain str: Enum's .value is a descriptor call, several per event
        # try/except rather than `guarded` on this hottest path (see errors.swallow); the span
        # event and the log record stay apart, so that one failing never costs the other.
        if self.span_events and span.is_recording():
            try:
                # The span already holds the job's attributes: the event adds only its own.
                span.add_event(name, own, timestamp=timestamp_ns)
            except Exception as exc:
                errors.swallow(Place.SPAN_EVENT, exc, name)
        try:
            record = {
                "ts": timestamp_ns,
                "sev": _ERROR if event_type is EventType.FAILED else _INFO,
                "body": f"rq job {facts.job_id} {name} ({facts.worker_class} on {facts.queue})",
                "attrs": {**facts.base_attributes, **own},
                "ev": EVENT_NAME_PREFIX + name,
            }
            forward = self._forwarding()
            if forward is not None:
                context = span.get_span_context()
                record.update(t="log", tid=context.trace_id, sid=context.span_id, fl=int(context.trace_flags))
                if forward(record):
                    return
            self._emit(record, span)
        except Exception as exc:
            errors.swallow(Place.LOG_RECORD, exc, name)

    def emit_forwarded(self, record: dict[str, Any]) -> None:
        """In the worker: a log record a horse forwarded, in the span context it was made in."""
        flags = TraceFlags(record["fl"])
        context = SpanContext(int(record["tid"]), int(record["sid"]), is_remote=False, trace_flags=flags)
        self._emit(record, NonRecordingSpan(context))

    def _emit(self, record: dict[str, Any], span: Span) -> None:
        severity, severity_text = _SEVERITY[record["sev"]]
        self.logger.emit(
            timestamp=record["ts"],
            observed_timestamp=time.time_ns(),
            context=self.context_of(span),
            severity_number=severity,
            severity_text=severity_text,
            body=record["body"],
            attributes=record["attrs"],
            event_name=record["ev"],
        )

    @staticmethod
    def mark_failed(span: Span, failure: Failure) -> None:
        with guarded(Place.SPAN_STATUS):
            span.set_attribute(ERROR_TYPE, failure.type)
            span.set_status(Status(StatusCode.ERROR, failure.message[:256]))
