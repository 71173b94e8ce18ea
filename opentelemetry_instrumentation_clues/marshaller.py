"""The default event marshaller: one clues event as one line of JSON (the seed's format).

The output is a single line without a trailing newline (publishers add line endings),
with the top-level keys ``event_type, timestamp, queue, metadata, worker_class, args`` in
that order, e.g.::

    {"event_type":"dequeued","timestamp":"2013-06-04T20:59:58Z","queue":"test_queue",
     "metadata":{"event_hash":"…","hostname":"…","process":30731},"worker_class":"TestWorker","args":[1,2]}

It never raises on what a job puts into its args or metadata: values JSON cannot represent
(bytes, datetimes, Decimals, sets, arbitrary objects, cycles, huge ints, NaN) are replaced by
a string representation instead.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

__all__ = ["EventMarshaller", "format_timestamp", "json_marshaller"]

_UTC = _dt.timezone.utc
_MAX_DEPTH = 64  # deeper structures are cut; json's C encoder would hit the recursion limit anyway


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
    try:
        line = _ENCODER.encode(event)
    except Exception:
        # Cycles, NaN, non-string keys, huge ints, a __repr__ that raises, too deep:
        # rebuild the event from plain values only, which json cannot refuse.
        try:
            line = _ENCODER.encode(_sanitize(event, 0, set()))
        except Exception:  # belt and braces: still one valid line with the event's identity
            line = _ENCODER.encode({**{k: _safe_str(v) for k, v in event.items()}, "args": "<unserializable>"})
    if line.isascii():  # the common case: nothing below can apply
        return line
    # With ensure_ascii=False json leaves these raw inside strings; they are valid JSON
    # but str.splitlines() and several log shippers treat them as line breaks.
    if "\u2028" in line or "\u2029" in line or "\x85" in line:
        line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them so the line stays valid UTF-8
        line = _ASCII_ENCODER.encode(json.loads(line))
    return line


def _default(value: object) -> object:
    """JSON fallback for values the encoder does not know (called by json for each one)."""
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)  # exact; a float would silently lose digits
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes_to_str(bytes(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return _sorted_if_possible(value)
    if isinstance(value, Mapping):
        return dict(value)
    return _safe_str(value)


def _sanitize(value: object, depth: int, path: set[int]) -> object:
    """Plain-JSON copy of ``value``: cycles and too-deep nesting become marker strings."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, int):
        try:
            int.__repr__(value)  # raises past sys.get_int_max_str_digits()
            return value
        except ValueError:
            return f"<int of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth >= _MAX_DEPTH:
        return "<too deep>"
    if id(value) in path:
        return "<cycle>"
    if isinstance(value, dict | list | tuple):
        path.add(id(value))
        try:
            if isinstance(value, dict):
                return {_key(k): _sanitize(v, depth + 1, path) for k, v in value.items()}
            return [_sanitize(v, depth + 1, path) for v in value]
        except Exception:
            return _safe_str(value)
        finally:
            path.discard(id(value))
    try:
        converted = _default(value)
    except Exception:
        return _safe_str(value)
    if isinstance(converted, str):
        return converted
    path.add(id(value))
    try:
        return _sanitize(converted, depth + 1, path)
    finally:
        path.discard(id(value))


def _key(key: object) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)  # same spelling json.dumps would have used for the key
    return _safe_str(key)


def _sorted_if_possible(values: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(values)  # stable output for sets of comparable values
    except Exception:
        return list(values)


def _bytes_to_str(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")


def _safe_str(value: object) -> str:
    try:
        return repr(value) if not isinstance(value, str) else value
    except Exception:
        try:
            return f"<unrepresentable {type(value).__qualname__}>"
        except Exception:
            return "<unrepresentable>"


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default)
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
