"""The seed's output, rebuilt from clues' OTel log records: one JSON line per event.

``LegacyJsonLineExporter`` is an SDK ``LogRecordExporter``: put it behind a log
record processor (``instrument(event_publisher=…)`` does that for you) and each
clues event becomes the line the Ruby gem wrote::

    {"event_type":"dequeued","timestamp":"2013-06-04T20:59:58Z","queue":"test_queue",
     "metadata":{"event_hash":"…","hostname":"…","process":30731,"time_in_queue":0.5},
     "worker_class":"tests.jobs.add","args":[1,2]}

Inside ``metadata``: event_hash, hostname, process, then time_in_queue /
time_to_perform, exception / message / backtrace (a list of lines) when they
apply, job_id, attempt, ``kwargs`` (when the job has keyword arguments: the
seed's format has no other place for them) and the user metadata keys. Log
records that are not clues events are passed over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk._logs.export import LogRecordExporter

from opentelemetry_instrumentation_clues.legacy.marshaller import EventMarshaller, json_marshaller
from opentelemetry_instrumentation_clues.legacy.publishers import EventPublisher, StandardOutPublisher
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.telemetry import attributes as ev

try:  # opentelemetry-sdk >= 1.40
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _Result
except ImportError:  # pragma: no cover - older SDKs
    from opentelemetry.sdk._logs.export import LogExportResult as _Result  # type: ignore[no-redef,assignment,unused-ignore]


class LegacyEvent:
    """The six marshaller arguments of one clues log record."""

    __slots__ = ("args", "event_type", "metadata", "queue", "timestamp", "worker_class")

    def __init__(
        self,
        event_type: str,
        timestamp: float,
        queue: str,
        metadata: dict[str, Any],
        worker_class: str,
        args: Any,
    ) -> None:
        self.event_type = event_type
        self.timestamp = timestamp
        self.queue = queue
        self.metadata = metadata
        self.worker_class = worker_class
        self.args = args

    def marshal(self, marshaller: EventMarshaller) -> str:
        return marshaller(self.event_type, self.timestamp, self.queue, self.metadata, self.worker_class, self.args)


# (attribute, metadata key) in the order they appear inside "metadata".
_METADATA_FIELDS = (
    (ev.EVENT_HASH, "event_hash"),
    (ev.HOSTNAME, "hostname"),
    (ev.PROCESS, "process"),
    (ev.TIME_IN_QUEUE, "time_in_queue"),
    (ev.TIME_TO_PERFORM, "time_to_perform"),
    (ev.ERROR_TYPE, "exception"),  # the exception's type, or clues' name for a failure that never raised
    (ev.EXCEPTION_MESSAGE, "message"),
    (ev.JOB_ID, "job_id"),
    (ev.ATTEMPT, "attempt"),
    (ev.WILL_RETRY, "will_retry"),
)


def legacy_event(timestamp_ns: int | None, attributes: Mapping[str, Any]) -> LegacyEvent | None:
    """The seed-format event of one log record, or None when it is not a clues event."""
    event_type = attributes.get(ev.EVENT_TYPE)
    if not isinstance(event_type, str):
        return None
    metadata: dict[str, Any] = {}
    for attribute, key in _METADATA_FIELDS:
        if attribute in attributes:
            metadata[key] = attributes[attribute]
    if ev.EXCEPTION_STACKTRACE in attributes:
        metadata["backtrace"] = str(attributes[ev.EXCEPTION_STACKTRACE]).splitlines()
    kwargs = _decoded(attributes.get(ev.KWARGS))
    if kwargs:
        metadata["kwargs"] = kwargs
    for name, value in attributes.items():
        if name.startswith(ev.METADATA_PREFIX):
            # clues' own keys win: a job's "attempt" must not hide the real one
            metadata.setdefault(name[len(ev.METADATA_PREFIX) :], value)
    args = _decoded(attributes.get(ev.ARGS))
    return LegacyEvent(
        event_type=event_type,
        timestamp=(timestamp_ns or 0) / 1e9,
        queue=str(attributes.get(ev.QUEUE, "")),
        metadata=metadata,
        worker_class=str(attributes.get(ev.WORKER_CLASS, "")),
        args=[] if args is None else args,
    )


def _decoded(value: Any) -> Any:
    """args/kwargs travel as JSON text; a cut (truncated) value stays a string."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


class LegacyJsonLineExporter(LogRecordExporter):
    """Writes each clues event, in the seed's format, to a publisher."""

    def __init__(self, publisher: EventPublisher | None = None, marshaller: EventMarshaller = json_marshaller) -> None:
        self.publisher: EventPublisher = publisher if publisher is not None else StandardOutPublisher()
        self.marshaller = marshaller

    def export(self, batch: Sequence[Any]) -> _Result:
        for item in batch:
            record = getattr(item, "log_record", item)
            event = legacy_event(record.timestamp, record.attributes or {})
            if event is None:
                continue
            try:
                line = event.marshal(self.marshaller)
            except Exception as exc:  # a user's marshaller
                errors.record(Place.LEGACY_MARSHALLER, exc)
                continue
            try:
                self.publisher.publish(line)
            except Exception as exc:  # a user's publisher
                errors.record(Place.LEGACY_PUBLISHER, exc, type(self.publisher).__name__)
        return _Result.SUCCESS

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        flush = getattr(self.publisher, "flush", None)
        if flush is None:
            return True
        try:
            return bool(flush(timeout_millis / 1000))
        except Exception as exc:
            errors.record(Place.LEGACY_FLUSH, exc, type(self.publisher).__name__)
            return False

    def shutdown(self) -> None:
        close = getattr(self.publisher, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                errors.record(Place.LEGACY_CLOSE, exc, type(self.publisher).__name__)
