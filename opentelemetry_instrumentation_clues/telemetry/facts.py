"""What clues knows of one job and one failure, computed once per job and process.

:class:`JobFacts` holds every attribute the job's events share; :class:`Failure`
why an attempt failed.
"""

from __future__ import annotations

import builtins
import os
import socket
import traceback
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.event_types import EventType
from opentelemetry_instrumentation_clues.telemetry.attributes import (
    ARGS,
    ATTEMPT,
    ERROR_TYPE,
    EVENT_HASH,
    EVENT_TYPE,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
    HOSTNAME,
    JOB_ID,
    KWARGS,
    MESSAGING_SYSTEM,
    MESSAGING_SYSTEM_VALUE,
    METADATA_PREFIX,
    PROCESS,
    QUEUE,
    TIME_IN_QUEUE,
    TIME_TO_PERFORM,
    WORKER_CLASS,
)
from opentelemetry_instrumentation_clues.values.attribute_values import attribute_value, key_text, render_arguments
from opentelemetry_instrumentation_clues.values.converter import clean_text, cut_middle, cut_text

_hostname = socket.gethostname()
_DEFAULT_SETTINGS = CluesConfig()


def metadata_attributes(metadata: dict[str, Any], limit: int) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    for key, value in metadata.items():
        name = key if type(key) is str else key_text(key)  # isinstance() may read a user's __class__
        attributes[METADATA_PREFIX + clean_text(cut_text(name, 256))] = attribute_value(value, limit)
    return attributes


@dataclass(frozen=True)
class Failure:
    """Why an attempt failed. ``raised`` is False for the kinds clues names itself (a killed
    horse, a stopped job, a returned ``Retry``): they are an ``error.type``, never an
    ``exception.type``, since no exception of that name exists."""

    type: str
    message: str
    stacktrace: str
    raised: bool = True

    @classmethod
    def from_exc_info(
        cls, exc_type: builtins.type[BaseException], exc: BaseException | None, tb: TracebackType | None
    ) -> Failure:
        return cls(
            type=exception_type_name(exc_type),
            message=clean_text(_safe_str(exc)),
            stacktrace=clean_text(_format_traceback(exc_type, exc, tb)),
        )


def exception_type_name(exc_type: builtins.type[BaseException]) -> str:
    """``module.qualname`` as the SDK's ``record_exception`` writes ``exception.type``; a bare name for builtins.

    Spans recorded by other instrumentations and by the SDK then name the same exception the
    same way, and two classes called ``Error`` in different modules stay apart.
    """
    try:
        module = exc_type.__module__
        name = exc_type.__qualname__
    except Exception:  # a class with a misbehaving metaclass
        return "<unknown>"
    return f"{module}.{name}" if module and module != "builtins" else name


def _format_traceback(
    exc_type: builtins.type[BaseException], exc: BaseException | None, tb: TracebackType | None
) -> str:
    try:
        return "".join(traceback.format_exception(exc_type, exc, tb))
    except Exception:  # an exception whose __str__ raises is printed by traceback; be safe anyway
        return f"{exc_type.__qualname__}: <traceback unavailable>"


def _safe_str(exc: BaseException | None) -> str:
    try:
        return str(exc) if exc is not None else ""
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


@dataclass(frozen=True)
class JobFacts:
    """What every event of one job carries, computed once per job and process."""

    job_id: str
    queue: str
    worker_class: str
    event_hash: str
    attempt: int
    base_attributes: dict[str, AttributeValue]
    metric_attributes: dict[str, AttributeValue]  # bounded cardinality: no ids, hashes or args
    # base_attributes less those a span of the job already got at its start (start_attributes):
    # what a recording span is given after it started, so no attribute is set twice.
    span_attributes: dict[str, AttributeValue]
    value_limit: int = CluesConfig.max_value_length  # exception.message, like every user-supplied value
    stacktrace_limit: int = CluesConfig.max_stacktrace_length

    @classmethod
    def build(
        cls,
        job: Any,
        queue_name: str,
        event_hash: str,
        attempt: int,
        metadata: dict[str, Any],
        settings: CluesConfig = _DEFAULT_SETTINGS,
    ) -> JobFacts:
        """Everything per job and process, so each event costs no argument conversion.

        With ``settings.capture_args``, the arguments go through ``settings.arguments``
        (the user's sanitizer, then redaction of secret-looking keys) and are converted to
        bounded JSON once, here.
        """
        limit, arguments = settings.max_value_length, settings.arguments
        worker_class = _func_name(job)
        job_id = str(job.id)
        span_attributes: dict[str, AttributeValue] = {
            EVENT_HASH: event_hash,
            WORKER_CLASS: worker_class,
            ATTEMPT: attempt,
        }
        if settings.capture_args:
            args, kwargs = _job_arguments(job)
            args, kwargs = arguments.sanitized(worker_class, args, kwargs)
            span_attributes[ARGS], span_attributes[KWARGS] = render_arguments(args, kwargs, limit, arguments)
        if metadata:
            span_attributes.update(metadata_attributes(metadata, limit))
        attributes: dict[str, AttributeValue] = {
            MESSAGING_SYSTEM: MESSAGING_SYSTEM_VALUE,
            QUEUE: queue_name,
            JOB_ID: job_id,
            **span_attributes,
        }
        metric_attributes: dict[str, AttributeValue] = {
            MESSAGING_SYSTEM: MESSAGING_SYSTEM_VALUE,
            QUEUE: queue_name,
            WORKER_CLASS: worker_class,
        }
        return cls(
            job_id,
            queue_name,
            worker_class,
            event_hash,
            attempt,
            attributes,
            metric_attributes,
            span_attributes,
            value_limit=limit,
            stacktrace_limit=settings.max_stacktrace_length,
        )

    def own_attributes(
        self,
        event_type: EventType,
        *,
        pid: int | None = None,
        time_in_queue: float | None = None,
        time_to_perform: float | None = None,
        failure: Failure | None = None,
        extra: dict[str, AttributeValue] | None = None,
    ) -> dict[str, AttributeValue]:
        """What one event adds to the job's attributes: type, where, its timings and failure.

        The span event carries only these (its span has the job's); the log record
        carries both (``{**base_attributes, **own}``)."""
        attributes: dict[str, AttributeValue] = {EVENT_TYPE: event_type._value_}
        attributes[HOSTNAME] = _hostname
        attributes[PROCESS] = os.getpid() if pid is None else pid
        if time_in_queue is not None:
            attributes[TIME_IN_QUEUE] = max(0.0, time_in_queue)
        if time_to_perform is not None:
            attributes[TIME_TO_PERFORM] = max(0.0, time_to_perform)
        if failure is not None:
            attributes[ERROR_TYPE] = failure.type
            if failure.raised:
                attributes[EXCEPTION_TYPE] = failure.type
            # A job may raise with a message of any size: bounded like every user value.
            attributes[EXCEPTION_MESSAGE] = cut_text(failure.message, self.value_limit)
            attributes[EXCEPTION_STACKTRACE] = cut_middle(failure.stacktrace, self.stacktrace_limit)
        if extra:
            attributes.update(extra)
        return attributes


def _func_name(job: Any) -> str:
    try:
        return str(job.func_name)
    except Exception:  # an undeserialisable job still gets its events
        return "<unknown>"


def _job_arguments(job: Any) -> tuple[Any, Any]:
    try:
        return list(job.args), dict(job.kwargs)
    except Exception:
        return ["<arguments could not be deserialised>"], {}
