"""Publishes lifecycle events: one span event and one OTel log record each.

The log record is self-contained (every field of the event); the span event
carries only what the event adds, since its span already has the job's fields.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from .events import ERROR_TYPE, OPERATION_NAME, EventType, Failure, JobFacts
from .metrics import CONSUMED, OUTCOME, PROCESS_DURATION, SENT, TIME_IN_QUEUE, MeasurementRouter
from .safety import guarded


class Telemetry:
    """The tracer and logger clues writes through, plus the event publishing rule."""

    def __init__(self, tracer: Tracer, logger: Logger, measurements: MeasurementRouter) -> None:
        self.tracer = tracer
        self.logger = logger
        self.measurements = measurements

    def count_sent(self, facts: JobFacts, operation: str) -> None:
        self.measurements.record(SENT, 1, {**facts.metric_attributes, OPERATION_NAME: operation})

    def record_time_in_queue(self, facts: JobFacts, seconds: float) -> None:
        self.measurements.record(TIME_IN_QUEUE, max(0.0, seconds), facts.metric_attributes)

    def record_attempt_end(
        self, facts: JobFacts, time_to_perform: float | None, outcome: str, failure: Failure | None = None
    ) -> None:
        attributes = {**facts.metric_attributes, OPERATION_NAME: "process", OUTCOME: outcome}
        if failure is not None:
            attributes[ERROR_TYPE] = failure.type
        self.measurements.record(CONSUMED, 1, attributes)
        if time_to_perform is not None:
            self.measurements.record(PROCESS_DURATION, max(0.0, time_to_perform), attributes)

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
        with guarded(f"{event_type.value} span event"):
            # The span already holds the job's attributes: the event adds only its own.
            span.add_event(event_type.value, own, timestamp=timestamp_ns)
        with guarded(f"{event_type.value} log record"):
            failed = event_type is EventType.FAILED
            self.logger.emit(
                timestamp=timestamp_ns,
                observed_timestamp=time.time_ns(),
                context=trace.set_span_in_context(span),
                severity_number=SeverityNumber.ERROR if failed else SeverityNumber.INFO,
                severity_text="ERROR" if failed else "INFO",
                body=f"rq job {facts.job_id} {event_type.value} ({facts.worker_class} on {facts.queue})",
                attributes={**facts.base_attributes, **own},
                event_name=event_type.event_name,
            )

    @staticmethod
    def mark_failed(span: Span, failure: Failure) -> None:
        with guarded("span status"):
            span.set_attribute(ERROR_TYPE, failure.type)
            span.set_status(Status(StatusCode.ERROR, failure.message[:256]))
