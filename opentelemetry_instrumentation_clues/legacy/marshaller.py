"""The default event marshaller: one clues event as one line of JSON (the seed's format).

The output is a single line without a trailing newline (publishers add line endings),
with the top-level keys ``event_type, timestamp, queue, metadata, worker_class, args`` in
that order, e.g.::

    {"event_type":"dequeued","timestamp":"2013-06-04T20:59:58Z","queue":"test_queue",
     "metadata":{"event_hash":"…","hostname":"…","process":30731},"worker_class":"TestWorker","args":[1,2]}

It never raises on what a job puts into its args or metadata: the package's one JSON
converter (:func:`~opentelemetry_instrumentation_clues.values.converter.whole_json`) spells
values JSON cannot represent (bytes, datetimes, Decimals, sets, cycles, huge ints, NaN) as
strings, and other objects by their type name (``<app.models.Invoice>``): no user
``__repr__``, ``__str__`` or container override ever runs here.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from opentelemetry_instrumentation_clues.values.converter import type_label, whole_json

__all__ = ["EventMarshaller", "format_timestamp", "json_marshaller"]

_UTC = _dt.timezone.utc


class EventMarshaller(Protocol):
    """Signature of an event marshaller: ``(event_type, timestamp, queue, metadata, worker_class, args)``.

    Parameters are positional, as in the seed's lambda, so any callable taking six
    positional arguments and returning ``str`` fits.
    """

    def __call__(
        self,
        event_type: str,
        timestamp: _dt.datetime | float,
        queue: str,
        metadata: Mapping[str, Any],
        worker_class: str,
        args: Sequence[Any],
        /,
    ) -> str: ...


def format_timestamp(timestamp: object) -> str:
    """Render ``timestamp`` as UTC ISO-8601, whole seconds, ``Z`` suffix (``2013-06-04T20:59:58Z``).

    Accepts an aware datetime, a naive datetime (taken as UTC) or epoch seconds. Anything
    else is passed through as a string rather than raising.
    """
    try:
        if isinstance(timestamp, _dt.datetime):
            tz = timestamp.tzinfo
            w = timestamp if tz is None or tz is _UTC else timestamp.astimezone(_UTC)
        elif isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool):
            w = _dt.datetime.fromtimestamp(timestamp, tz=_UTC)
        else:
            return _safe_str(timestamp)
        # Faster than isoformat()/strftime(), and pads the year to 4 digits on every platform.
        return f"{w.year:04d}-{w.month:02d}-{w.day:02d}T{w.hour:02d}:{w.minute:02d}:{w.second:02d}Z"
    except (ValueError, OverflowError, OSError, TypeError):
        return _safe_str(timestamp)


def json_marshaller(
    event_type: str,
    timestamp: _dt.datetime | float,
    queue: str,
    metadata: Mapping[str, Any],
    worker_class: str,
    args: Sequence[Any],
) -> str:
    """Marshal one clues event to one line of JSON (no trailing newline)."""
    event = {
        "event_type": event_type,
        "timestamp": format_timestamp(timestamp),
        "queue": queue,
        "metadata": metadata,
        "worker_class": worker_class,
        "args": args,
    }
    return whole_json(event)


def _safe_str(value: Any) -> str:
    """A timestamp that is neither a datetime nor a number, as text: builtin scalars by repr,
    anything else by type name (never a user's ``__repr__``/``__str__``)."""
    kind = type(value)
    if issubclass(kind, str):
        return str.__str__(value)
    if value is None or kind in (bool, int, float, complex):
        try:
            return repr(value)
        except ValueError:  # an int past sys.get_int_max_str_digits()
            return f"<int of {int.bit_length(value)} bits>"
    return type_label(value)
