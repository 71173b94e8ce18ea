"""Publishes lifecycle events: one span event and one OTel log record each."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry._logs import Logger, SeverityNumber
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from .events import ERROR_TYPE, EventType, Failure, JobFacts
from .safety import guarded


class Telemetry:
    """The tracer and logger clues writes through, plus the event publishing rule."""

    def __init__(self, tracer: Tracer, logger: Logger) -> None:
        self.tracer = tracer
        self.logger = logger

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
        attributes = facts.event_attributes(
            event_type,
            pid=pid,
            time_in_queue=time_in_queue,
            time_to_perform=time_to_perform,
            failure=failure,
            extra=extra,
        )
        with guarded(f"{event_type.value} span event"):
            span.add_event(event_type.value, attributes, timestamp=timestamp_ns)
        with guarded(f"{event_type.value} log record"):
            failed = event_type is EventType.FAILED
            self.logger.emit(
                timestamp=timestamp_ns,
                observed_timestamp=time.time_ns(),
                context=trace.set_span_in_context(span),
                severity_number=SeverityNumber.ERROR if failed else SeverityNumber.INFO,
                severity_text="ERROR" if failed else "INFO",
                body=f"rq job {facts.job_id} {event_type.value} ({facts.worker_class} on {facts.queue})",
                attributes=attributes,
                event_name=event_type.event_name,
            )

    @staticmethod
    def mark_failed(span: Span, failure: Failure) -> None:
        with guarded("span status"):
            span.set_attribute(ERROR_TYPE, failure.type)
            span.set_status(Status(StatusCode.ERROR, failure.message[:256]))
