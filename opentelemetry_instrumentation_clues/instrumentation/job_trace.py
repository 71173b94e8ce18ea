"""Where each span of a job's trace hangs, per propagation mode.

``link`` (default): the first ``send`` span is a new root whose trace id is the
job's event_hash; the span that enqueued (if any) is linked. ``child``: the job
joins the enqueuing trace and the event_hash is its own random 128-bit hex.
``none``: no context travels with the job; every span stays in its own process.
Later spans of the job (re-enqueues, attempts) continue from the context stored
in ``job.meta``, through the configured global propagator (OTEL_PROPAGATORS).
"""

from __future__ import annotations

import uuid

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_clues.config import Propagation
from opentelemetry_instrumentation_clues.instrumentation.job_context import JobClues
from opentelemetry_instrumentation_clues.telemetry.facts import JobFacts


def new_event_hash(span: Span | None = None) -> str:
    """The trace id of ``span`` as 32 hex chars, or a random one when it has none."""
    if span is not None:
        span_context = span.get_span_context()
        if span_context.is_valid:
            return format(span_context.trace_id, "032x")
    return uuid.uuid4().hex


def start_first_send(
    tracer: Tracer, name: str, mode: Propagation, attributes: dict[str, AttributeValue], start_ns: int
) -> tuple[Span, str]:
    """The span of a job's first enqueue, and the job's event_hash."""
    if mode is Propagation.LINK:
        caller = trace.get_current_span().get_span_context()
        links = [Link(caller)] if caller.is_valid else None
        span = tracer.start_span(
            name,
            context=Context(),
            kind=SpanKind.PRODUCER,
            links=links,
            attributes=attributes,
            start_time=start_ns,
        )
        return span, new_event_hash(span)
    span = tracer.start_span(name, kind=SpanKind.PRODUCER, attributes=attributes, start_time=start_ns)
    return span, new_event_hash()


def start_continued(
    tracer: Tracer,
    name: str,
    kind: SpanKind,
    clues: JobClues | None,
    mode: Propagation,
    attributes: dict[str, AttributeValue],
    start_ns: int,
) -> Span:
    """A later span of a job (re-enqueue or attempt), under the job's stored context.

    When the current span already belongs to the job's trace (a retry enqueued
    from inside the failing attempt), it is the more precise parent; when it
    belongs to another trace (a dependent enqueued by the job it waited for), it
    is linked. An attempt's ``process`` span also links to the job's creation
    context (its last send), as the messaging conventions ask, even when that is
    its parent.
    """
    parent = job_parent_context(clues, mode)
    current = trace.get_current_span().get_span_context()
    links: list[Link] | None = None
    if parent is not None:
        stored = trace.get_current_span(parent).get_span_context()
        if kind is SpanKind.CONSUMER:
            links = [Link(stored)]
        if current.is_valid and current.trace_id == stored.trace_id:
            parent = None  # the current context
        elif current.is_valid:
            links = [*(links or ()), Link(current)]
    elif mode is not Propagation.NONE or kind is SpanKind.CONSUMER:
        parent = Context()  # a job without context starts its own trace in the worker
    return tracer.start_span(name, context=parent, kind=kind, attributes=attributes, start_time=start_ns, links=links)


def job_parent_context(clues: JobClues | None, mode: Propagation) -> Context | None:
    if clues is None or not clues.carrier or mode is Propagation.NONE:
        return None
    context = propagate.extract(clues.carrier, context=Context())
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def carrier_for(span: Span, mode: Propagation) -> dict[str, str]:
    if mode is Propagation.NONE:
        return {}
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span, Context()))
    return carrier


def describe(span: Span, facts: JobFacts) -> None:
    """Give a recording span the job's attributes it did not get at its start."""
    if span.is_recording():
        span.set_attributes(facts.span_attributes)
