"""An attempt's transitions, published: dequeued, perform_started, then its outcome.

Whoever learns of a transition — the worker that dequeues, the process that
performs, the worker replaying what its forked horse reported, registry clean-up
finding an abandoned job — calls the one method here for it; the attempt refuses
a transition it has already made, so each event is published once.
"""

from __future__ import annotations

import os
import time
from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.event_types import EventType
from opentelemetry_instrumentation_clues.instrumentation import job_context, spawn_handoff
from opentelemetry_instrumentation_clues.instrumentation.attempts import Attempt, Outcome
from opentelemetry_instrumentation_clues.instrumentation.job_context import JobClues, facts_for
from opentelemetry_instrumentation_clues.instrumentation.job_trace import (
    carrier_for,
    describe,
    new_event_hash,
    start_continued,
)
from opentelemetry_instrumentation_clues.instrumentation.rq_compat import as_epoch_ns
from opentelemetry_instrumentation_clues.telemetry.attributes import WILL_RETRY, start_attributes
from opentelemetry_instrumentation_clues.telemetry.emitter import Telemetry
from opentelemetry_instrumentation_clues.telemetry.facts import Failure, metadata_attributes


class Lifecycle:
    def __init__(self, telemetry: Telemetry, config: CluesConfig) -> None:
        self.telemetry = telemetry
        self.config = config

    # Beginning an attempt --------------------------------------------------------
    def begin(self, job: Any, queue_name: str, dequeued_ns: int | None) -> Attempt:
        """A new attempt and its ``process`` span, under the job's stored context."""
        mode = self.config.propagation
        start_ns = dequeued_ns or time.time_ns()
        attributes = _start_attributes(job, queue_name)
        clues = job_context.read(job)
        if clues is not None:
            # The usual case: the facts are known before the span starts, so it starts with
            # all its attributes (one pass through the SDK's attribute checks, not two).
            clues.attempt += 1
            facts = facts_for(job, queue_name, clues, self.config)
            attributes.update(facts.span_attributes)
        span = start_continued(
            self.telemetry.tracer, f"process {queue_name}", SpanKind.CONSUMER, clues, mode, attributes, start_ns
        )
        if clues is None:
            # Enqueued without clues: the job's event_hash is its new trace's id. It is kept in
            # memory only, and saved if rq saves the job again (a retry, say).
            clues = JobClues(event_hash=new_event_hash(span), carrier=carrier_for(span, mode), attempt=1)
            facts = facts_for(job, queue_name, clues, self.config)
            describe(span, facts)
        job_context.write(job, clues)
        return Attempt(job_id=facts.job_id, facts=facts, span=span, dequeued_ns=dequeued_ns)

    def begin_spawned(self, job: Any, queue_name: str, handoff: spawn_handoff.Handoff) -> Attempt:
        """In a SpawnWorker's horse (a fresh interpreter): a ``perform`` span under the worker's."""
        parent = propagate.extract(handoff.carrier, context=Context())
        span = self.telemetry.tracer.start_span(
            f"perform {queue_name}", context=parent, attributes=_start_attributes(job, queue_name)
        )
        clues = job_context.read(job) or JobClues(event_hash=handoff.event_hash)
        clues.event_hash, clues.attempt = handoff.event_hash, handoff.attempt
        job_context.write(job, clues)
        facts = facts_for(job, queue_name, clues, self.config)
        describe(span, facts)
        return Attempt(job_id=facts.job_id, facts=facts, span=span, spawned=True)

    # Transitions -------------------------------------------------------------------
    def dequeued(self, attempt: Attempt, job: Any) -> None:
        assert attempt.dequeued_ns is not None
        enqueued_ns = as_epoch_ns(getattr(job, "enqueued_at", None))
        time_in_queue = (attempt.dequeued_ns - enqueued_ns) / 1e9 if enqueued_ns else None
        self.telemetry.publish(
            EventType.DEQUEUED, attempt.facts, attempt.span, attempt.dequeued_ns, time_in_queue=time_in_queue
        )
        if time_in_queue is not None:
            self.telemetry.record_time_in_queue(attempt.facts, time_in_queue, attempt.span)

    def started(self, attempt: Attempt, started_ns: int, pid: int) -> None:
        if attempt.start(started_ns, pid):
            self.publish_started(attempt)

    def publish_started(self, attempt: Attempt) -> None:
        assert attempt.perform_started_ns is not None
        started_ns, pid = attempt.perform_started_ns, attempt.performer_pid
        self.telemetry.publish(EventType.PERFORM_STARTED, attempt.facts, attempt.span, started_ns, pid=pid)

    def ended(self, attempt: Attempt, outcome: Outcome) -> None:
        if attempt.end():
            self.publish_outcome(attempt, outcome)

    def publish_outcome(self, attempt: Attempt, outcome: Outcome) -> None:
        """perform_finished or failed, with the attempt's metrics. A span this process
        does not perform under (a horse that died, a job found abandoned) ends here."""
        facts, span, failure = attempt.facts, attempt.span, outcome.failure
        extra: dict[str, Any] = dict(outcome.metadata)
        pid = outcome.pid
        if failure is None:
            self.telemetry.publish(
                EventType.PERFORM_FINISHED,
                facts,
                span,
                outcome.end_ns,
                pid=pid,
                time_to_perform=outcome.time_to_perform,
                extra=extra,
            )
            self.telemetry.record_attempt_end(facts, span, outcome.time_to_perform, "success")
        else:
            extra[WILL_RETRY] = outcome.will_retry
            self.telemetry.publish(
                EventType.FAILED,
                facts,
                span,
                outcome.end_ns,
                pid=pid,
                time_to_perform=outcome.time_to_perform,
                failure=failure,
                extra=extra,
            )
            self.telemetry.mark_failed(span, failure)
            outcome_name = "retried" if outcome.will_retry else "failure"
            self.telemetry.record_attempt_end(facts, span, outcome.time_to_perform, outcome_name, failure)
        if not attempt.performing_here:
            attempt.end_span(outcome.end_ns)

    # Outcomes ------------------------------------------------------------------------
    def outcome_of(self, attempt: Attempt, job: Any, failure: Failure | None, will_retry: bool) -> Outcome:
        """The outcome rq is handling now, timed and with the job's runtime metadata."""
        end_ns = _ended_ns(job, attempt)
        time_to_perform = _time_to_perform(attempt, job, end_ns)
        return Outcome(end_ns, time_to_perform, failure, will_retry, self._runtime_metadata(job), os.getpid())

    def _runtime_metadata(self, job: Any) -> dict[str, Any]:
        """What the job added with clues_metadata() while it ran."""
        if not job_context.has_metadata(job):  # most jobs: no need to parse and check it all again
            return {}
        clues = job_context.read(job)
        return metadata_attributes(clues.metadata, self.config.max_value_length) if clues else {}


def _start_attributes(job: Any, queue_name: str) -> dict[str, AttributeValue]:
    return start_attributes("process", "process", queue_name, str(job.id))


def _ended_ns(job: Any, attempt: Attempt) -> int:
    ended_ns = as_epoch_ns(getattr(job, "ended_at", None))
    # A job fetched again for a later attempt still carries the previous ended_at.
    began_ns = attempt.perform_started_ns or attempt.dequeued_ns or 0
    return ended_ns if ended_ns and ended_ns >= began_ns else time.time_ns()


def _time_to_perform(attempt: Attempt, job: Any, end_ns: int) -> float | None:
    if attempt.perform_started_ns is not None:
        return max(0, end_ns - attempt.perform_started_ns) / 1e9
    started_ns = as_epoch_ns(getattr(job, "started_at", None))
    return max(0, end_ns - started_ns) / 1e9 if started_ns else None
