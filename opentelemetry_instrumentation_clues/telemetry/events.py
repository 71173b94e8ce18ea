"""The lifecycle event: its types and its attribute names.

The same attributes go on the span event and on the log record of each
lifecycle event; the legacy exporter reads them back into the seed's format.
"""

from __future__ import annotations

import builtins
import os
import socket
import traceback
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry.semconv._incubating.attributes import host_attributes as _host
from opentelemetry.semconv._incubating.attributes import messaging_attributes as _messaging
from opentelemetry.semconv._incubating.attributes import process_attributes as _process
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import exception_attributes as _exception
from opentelemetry.semconv.schemas import Schemas
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from opentelemetry_instrumentation_clues.instrumentation.job_context import JobClues

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.event_types import EventType
from opentelemetry_instrumentation_clues.values.converter import (
    Describe,
    clean_text,
    cut_middle,
    cut_text,
    repr_or_label,
    type_label,
)
from opentelemetry_instrumentation_clues.values.converter import bounded_json as _bounded_json
from opentelemetry_instrumentation_clues.values.redaction import DEFAULT_POLICY, ArgumentPolicy, Redactor

# Attribute names (docs/design.md lists them with their meaning). Where the semantic conventions
# define a name, it is taken from opentelemetry-semantic-conventions rather than retyped, so a
# typo cannot drift from the conventions; the rest are clues' and rq's own.
EVENT_TYPE = "clues.event_type"
EVENT_HASH = "clues.event_hash"
MESSAGING_SYSTEM = _messaging.MESSAGING_SYSTEM
QUEUE = _messaging.MESSAGING_DESTINATION_NAME
JOB_ID = _messaging.MESSAGING_MESSAGE_ID
OPERATION_TYPE = _messaging.MESSAGING_OPERATION_TYPE
OPERATION_NAME = _messaging.MESSAGING_OPERATION_NAME
WORKER_CLASS = "rq.job.func_name"
ARGS = "rq.job.args"
KWARGS = "rq.job.kwargs"
ATTEMPT = "rq.job.attempt"
WILL_RETRY = "rq.job.will_retry"  # on failed: rq will run the job again
HOSTNAME = _host.HOST_NAME
PROCESS = _process.PROCESS_PID
TIME_IN_QUEUE = "clues.time_in_queue"
TIME_TO_PERFORM = "clues.time_to_perform"
EXCEPTION_TYPE = _exception.EXCEPTION_TYPE
EXCEPTION_MESSAGE = _exception.EXCEPTION_MESSAGE
EXCEPTION_STACKTRACE = _exception.EXCEPTION_STACKTRACE
ERROR_TYPE = _error.ERROR_TYPE
METADATA_PREFIX = "clues.metadata."

# The semantic-conventions version whose names these are, for the tracer, logger and meter's
# schema_url. The messaging names used here (operation.type send/create/settle,
# messaging.client.sent.messages) are those of 1.28 and unchanged since.
SCHEMA_URL = Schemas.V1_28_0.value

MESSAGING_SYSTEM_VALUE = "rq"  # not a registered semconv value; documented in docs/design.md

_hostname = socket.gethostname()


def bounded_json(value: Any, limit: int, redactor: Redactor | None = None, describe: Describe | None = None) -> str:
    """Valid, single-line JSON text of ``value``, cut structurally to about ``limit`` chars.

    See :mod:`.bounded`: at most ``limit + MAX_OVERSHOOT`` chars, never raises, runs no
    user code unless ``describe`` does, and keys that look secret are redacted when a
    ``redactor`` is given.
    """
    return _bounded_json(value, limit, redactor, describe)


def render_arguments(args: Any, kwargs: Any, limit: int, arguments: ArgumentPolicy) -> tuple[str, str]:
    """Bounded JSON of a job's args and kwargs, objects without a JSON form spelled by type name.

    With ``args_repr`` they are spelled by ``repr()`` instead, which is user code and may
    sleep or hang: both are rendered in the policy's helper thread, and when that does not
    finish in time (or is switched off after repeated timeouts) the caller renders them by
    type name after all. Either way the enqueue or dequeue waits a bounded time."""
    caller = arguments.repr_caller
    if caller is not None:
        result: list[str] = []

        def render() -> None:
            result.append(bounded_json(args, limit, arguments.redactor, repr_or_label))
            result.append(bounded_json(kwargs, limit, arguments.redactor, repr_or_label))

        if caller.call(render) and len(result) == 2:
            return result[0], result[1]
    return bounded_json(args, limit, arguments.redactor), bounded_json(kwargs, limit, arguments.redactor)


def start_attributes(
    operation_type: str, operation_name: str, queue_name: str, job_id: str
) -> dict[str, AttributeValue]:
    """What a sampler sees when a span of a job starts: the messaging spec's sampling-relevant
    attributes. The rest of the job's attributes follow only on a recording span."""
    return {
        MESSAGING_SYSTEM: MESSAGING_SYSTEM_VALUE,
        QUEUE: queue_name,
        OPERATION_TYPE: operation_type,
        OPERATION_NAME: operation_name,
        JOB_ID: job_id,
    }


_INT64 = (-(2**63), 2**63 - 1)


def attribute_value(value: Any, limit: int) -> AttributeValue:
    """An OTel attribute value for arbitrary user metadata (exportable by OTLP).

    Subclasses of int, float and str are read through the builtin's own methods, and
    anything else goes to :func:`bounded_json`: no user code runs here."""
    kind = type(value)
    if kind is bool:
        return bool(value)
    if issubclass(kind, int):
        number = int.__int__(value)
        if _INT64[0] <= number <= _INT64[1]:
            return number
        return bounded_json(number, limit)  # OTLP ints are 64-bit
    if issubclass(kind, float):
        return float.__float__(value)
    if issubclass(kind, str):
        return safe_text(cut_text(str.__str__(value), limit))
    return bounded_json(value, limit)


def safe_text(text: str) -> str:
    """``text`` as valid UTF-8 (lone surrogates escaped), so OTLP can encode it."""
    return clean_text(text)


def metadata_attributes(metadata: dict[str, Any], limit: int) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    for key, value in metadata.items():
        name = key if type(key) is str else _safe_key(key)  # isinstance() may read a user's __class__
        attributes[METADATA_PREFIX + safe_text(cut_text(name, 256))] = attribute_value(value, limit)
    return attributes


def _safe_key(key: Any) -> str:
    """str() of a builtin scalar key; any other key by its type name (its __str__ is user code)."""
    if type(key) in (bool, int, float, type(None)):
        return str(key)
    return str.__str__(key) if issubclass(type(key), str) else type_label(key)


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
            message=safe_text(_safe_str(exc)),
            stacktrace=safe_text(_format_traceback(exc_type, exc, tb)),
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
        capture_args: bool,
        limit: int,
        arguments: ArgumentPolicy = DEFAULT_POLICY,
        stacktrace_limit: int = CluesConfig.max_stacktrace_length,
    ) -> JobFacts:
        """Everything per job and process, so each event costs no argument conversion.

        With ``capture_args``, the arguments go through ``arguments`` (the user's
        sanitizer, then redaction of secret-looking keys) and are converted to
        bounded JSON once, here.
        """
        worker_class = _func_name(job)
        attributes: dict[str, AttributeValue] = {
            EVENT_HASH: event_hash,
            MESSAGING_SYSTEM: MESSAGING_SYSTEM_VALUE,
            QUEUE: queue_name,
            JOB_ID: str(job.id),
            WORKER_CLASS: worker_class,
            ATTEMPT: attempt,
        }
        if capture_args:
            args, kwargs = _job_arguments(job)
            args, kwargs = arguments.sanitized(worker_class, args, kwargs)
            attributes[ARGS], attributes[KWARGS] = render_arguments(args, kwargs, limit, arguments)
        attributes.update(metadata_attributes(metadata, limit))
        metric_attributes: dict[str, AttributeValue] = {
            MESSAGING_SYSTEM: MESSAGING_SYSTEM_VALUE,
            QUEUE: queue_name,
            WORKER_CLASS: worker_class,
        }
        return cls(
            str(job.id),
            queue_name,
            worker_class,
            event_hash,
            attempt,
            attributes,
            metric_attributes,
            value_limit=limit,
            stacktrace_limit=stacktrace_limit,
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
        attributes: dict[str, AttributeValue] = {EVENT_TYPE: event_type.value}
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


def facts_for(job: Any, queue_name: str, clues: JobClues, config: CluesConfig) -> JobFacts:
    """The job's facts for its events in this process, as the settings say."""
    return JobFacts.build(
        job,
        queue_name,
        clues.event_hash,
        clues.attempt,
        clues.metadata,
        config.capture_args,
        config.max_value_length,
        arguments=config.arguments,
        stacktrace_limit=config.max_stacktrace_length,
    )
