"""The default event marshaller: one clues event as one line of JSON (the seed's format).

The output is a single line without a trailing newline (publishers add line endings),
with the top-level keys ``event_type, timestamp, queue, metadata, worker_class, args`` in
that order, e.g.::

    {"event_type":"dequeued","timestamp":"2013-06-04T20:59:58Z","queue":"test_queue",
     "metadata":{"event_hash":"…","hostname":"…","process":30731},"worker_class":"TestWorker","args":[1,2]}

It never raises on what a job puts into its args or metadata: values JSON cannot represent
(bytes, datetimes, Decimals, sets, cycles, huge ints, NaN) are replaced by a string
representation instead, and other objects by their type name (``<app.models.Invoice>``):
no user ``__repr__``, ``__str__`` or container override ever runs here.
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

from opentelemetry_instrumentation_clues.values.converter import key_label, type_label

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
        if not _encoder_safe(event):  # json's C encoder would call a subclass's items() or __iter__
            raise _NeedsSanitizing
        line = _ENCODER.encode(event)
    except Exception:
        # Cycles, NaN, non-string keys, huge ints, subclasses of containers, too deep:
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


class _NeedsSanitizing(Exception):
    pass


def _encoder_safe(value: Any) -> bool:
    """Whether json's C encoder can take ``value`` without running user code.

    It calls ``items()`` of a dict subclass and iterates a list or tuple subclass through
    their own methods, and :func:`_default` may turn a set or an Enum into such containers:
    those go to :func:`_sanitize`, which reads them through the builtins' methods. Cycles
    and nesting past the depth limit are left to it too."""
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list or kind is tuple:
            if depth >= _MAX_DEPTH or id(item) in seen:
                return False
            seen.add(id(item))
            children = dict.values(item) if kind is dict else item
            stack.extend((child, depth + 1) for child in children)
        elif issubclass(kind, (dict, list, tuple, set, frozenset, Enum)):
            return False
    return True


def _default(value: Any) -> object:
    """JSON fallback for values the encoder does not know (called by json for each one).

    Read through the builtins' own methods; objects without a JSON form are named by type."""
    kind = type(value)
    if issubclass(kind, _dt.datetime):
        return _dt.datetime.isoformat(value)
    if issubclass(kind, _dt.date):
        return _dt.date.isoformat(value)
    if issubclass(kind, _dt.time):
        return _dt.time.isoformat(value)
    if issubclass(kind, Decimal):
        return Decimal.__str__(value)  # exact; a float would silently lose digits
    if issubclass(kind, bytes):
        return _bytes_to_str(bytes.__getitem__(value, slice(None)))
    if issubclass(kind, bytearray):
        return _bytes_to_str(bytes(bytearray.__getitem__(value, slice(None))))
    if issubclass(kind, memoryview):
        return _bytes_to_str(bytes(value))
    if issubclass(kind, Enum):
        return object.__getattribute__(value, "_value_")
    if issubclass(kind, set):
        return _sorted_if_possible(list(set.__iter__(value)))
    if issubclass(kind, frozenset):
        return _sorted_if_possible(list(frozenset.__iter__(value)))
    return _safe_str(value)


def _sanitize(value: Any, depth: int, path: set[int]) -> object:
    """Plain-JSON copy of ``value``: cycles and too-deep nesting become marker strings."""
    kind = type(value)
    if value is None or kind is bool:
        return value
    if issubclass(kind, str):
        return str.__str__(value)
    if issubclass(kind, int) and not issubclass(kind, Enum):
        try:
            int.__repr__(value)  # raises past sys.get_int_max_str_digits()
            return int.__int__(value)
        except ValueError:
            return f"<int of {int.bit_length(value)} bits>"
    if issubclass(kind, float) and not issubclass(kind, Enum):
        number = float.__float__(value)
        return number if math.isfinite(number) else float.__repr__(number)
    if depth >= _MAX_DEPTH:
        return "<too deep>"
    if id(value) in path:
        return "<cycle>"
    if issubclass(kind, (dict, list, tuple)):
        path.add(id(value))
        try:
            if issubclass(kind, dict):
                return {_key(k): _sanitize(v, depth + 1, path) for k, v in dict.items(value)}
            iterate = list.__iter__ if issubclass(kind, list) else tuple.__iter__
            return [_sanitize(v, depth + 1, path) for v in iterate(value)]
        except Exception:
            return _safe_str(value)
        finally:
            path.discard(id(value))
    try:
        converted = _default(value)
    except Exception:
        return _safe_str(value)
    if type(converted) is str:
        return converted
    path.add(id(value))
    try:
        return _sanitize(converted, depth + 1, path)
    finally:
        path.discard(id(value))


def _key(key: Any) -> str:
    kind = type(key)
    if issubclass(kind, str):
        return str.__str__(key)
    if key is None or kind is bool:
        return json.dumps(key)
    if issubclass(kind, (int, float)):
        number = int.__int__(key) if issubclass(kind, int) else float.__float__(key)  # a subclass's own: user code
        try:
            return json.dumps(number)  # same spelling json.dumps would have used for the key
        except ValueError:
            return "<int key>"
    return key_label(key)


_SORTABLE = frozenset((str, int, float))


def _sorted_if_possible(values: list[Any]) -> list[Any]:
    """Sorted for stable output when all are builtin numbers or all strings (others' __lt__ is user code)."""
    kinds = {type(v) for v in values}
    if (len(kinds) == 1 and kinds <= _SORTABLE) or kinds <= {int, float}:
        try:
            return sorted(values)
        except Exception:  # pragma: no cover - builtins of one kind compare
            return values
    return values


def _bytes_to_str(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")


def _safe_str(value: Any) -> str:
    """Text for a value without a JSON form: builtin scalars by repr, anything else by type name.

    Never a user's ``__repr__``/``__str__``: they may be slow or hang (docs/design.md)."""
    kind = type(value)
    if issubclass(kind, str):
        return str.__str__(value)
    if value is None or kind in (bool, int, float, complex):
        try:
            return repr(value)
        except ValueError:  # an int past sys.get_int_max_str_digits()
            return f"<int of {int.bit_length(value)} bits>"
    return type_label(value)


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default)
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
