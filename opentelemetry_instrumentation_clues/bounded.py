"""Bounded JSON text of arbitrary job arguments: always valid, always one line, never huge.

``bounded_json(value, limit)`` returns JSON text of at most ``limit + MAX_OVERSHOOT``
characters. Small, plain values (the common case) are encoded once by json's C
encoder. Anything else — too long, not JSON-serialisable, cyclic, too deep, or
holding a key that may need redacting — goes through a walk that converts and cuts
*structurally*, visiting only as much of the value as fits: a 10 MB string or a
million-element list costs about ``limit`` characters of work, not 10 MB.

Where the value is cut, a marker says so and everything after it is dropped:

* a long string ends with ``…[truncated N chars]``;
* a list gets a last element ``"…[truncated N items]"``;
* a dict gets a last key ``"…[truncated]"`` whose value is ``"N keys"``;
* a value nested deeper than :data:`MAX_DEPTH` becomes ``"…[truncated: too deep]"``.

Values json cannot represent become strings: datetimes and dates ISO-8601, Decimals
exactly, bytes as UTF-8 (else ``base64:…``), sets as (sorted) lists, enums by value,
cycles as ``"<cycle>"``, other objects by ``repr`` (``<unrepresentable T>`` when it raises).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from itertools import islice
from typing import Any

from .redaction import REDACTED, Redactor

MAX_DEPTH = 32
TOO_DEEP = "…[truncated: too deep]"
DICT_MARKER_KEY = "…[truncated]"
# The most a result may exceed ``limit`` by: one cut marker with its quotes and separators.
MAX_OVERSHOOT = 64
_FIRST_CHUNK = 16
_MAX_CHUNK = 512

_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _make_encode() -> Callable[[Any], str]:
    """json's C encoder, built once. ``JSONEncoder.encode`` builds one per call, which costs
    more than encoding small args. No cycle bookkeeping: a cycle ends in RecursionError,
    and the caller then takes the slow path, which handles cycles."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - interpreters without the C accelerator
        return _ENCODER.encode
    chunks = make(None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False)

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


_encode = _make_encode()
# What json's C encoder may raise, including from user code it runs (a dict subclass's items()).
_FAST_FAILURES = (Exception,)


def bounded_json(value: Any, limit: int, redactor: Redactor | None = None) -> str:
    """JSON text of ``value``: valid, single line, at most ``limit + MAX_OVERSHOOT`` chars; never raises."""
    whole_size = 0  # JSON length of the whole value, when json could encode it
    if not _obviously_big(value, limit):
        try:
            text = _encode(value)
        except _FAST_FAILURES:
            pass
        else:
            whole_size = len(text)
            if len(text) <= limit and not (redactor and redactor.may_match(text)):
                text = _one_line(text)
                if len(text) <= limit + MAX_OVERSHOOT:
                    return text
    try:
        text = _encode(_Cutter(limit, redactor, whole_size).plain(value, 0))
    except Exception:  # belt and braces: the walk only builds str, int, float, bool, None, list, dict
        text = _encode(f"<unrepresentable {_type_name(value)}>")
    text = _one_line(text)
    if len(text) > limit + MAX_OVERSHOOT:  # not expected: keeps the bound unconditional
        text = _as_cut_string(text, limit)
    return text


def _as_cut_string(text: str, limit: int) -> str:
    """``text`` cut into a JSON string marker that fits, however much escaping inflates it."""
    keep = limit
    while True:
        out = _one_line(_encode(_cut_string(text, keep)))
        if len(out) <= limit + MAX_OVERSHOOT or keep == 0:
            return out
        keep = min(keep - 1, keep * limit // len(out))


def clean_text(text: str) -> str:
    """Lone surrogates (not encodable as UTF-8) become visible ``\\udc80`` escapes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _encoded_size(text: str) -> int:
    """Length of the JSON of a clean string, as it ends up after :func:`_one_line`."""
    return len(_one_line(_encode(text)))


def cut_text(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` chars plus a marker saying how many were dropped."""
    return text if len(text) <= limit else _cut_string(text, limit)


def cut_middle(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` chars by dropping its middle, with a marker saying how many went.

    For tracebacks: the outermost frames and the innermost ones with the exception line
    are the informative ends."""
    if len(text) <= limit:
        return text
    head = max(0, limit) // 2
    tail = max(0, limit) - head
    return f"{text[:head]}…[truncated {len(text) - head - tail} chars]…{text[len(text) - tail :]}"


def _cut_string(text: str, keep: int) -> str:
    keep = max(0, keep)
    return text[:keep] + f"…[truncated {len(text) - keep} chars]"


def _one_line(text: str) -> str:
    """JSON escapes \\n and control chars; make U+2028/2029/0085 and lone surrogates safe too."""
    if text.isascii():
        return text
    if "\u2028" in text or "\u2029" in text or "\x85" in text:
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").replace("\x85", "\\u0085")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates would break OTLP's protobuf encoding
        text = _ASCII_ENCODER.encode(json.loads(text))
    return text


_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_SMALL = frozenset((int, float, bool, type(None)))


def _obviously_big(value: Any, limit: int) -> bool:
    """A cheap look at the top two levels, so a huge argument skips the full C encoding."""
    try:
        return _big(value, limit)
    except Exception:  # a container whose len() or iteration raises: let the careful walk have it
        return True


def _big(value: Any, limit: int) -> bool:
    kind = type(value)
    if kind in _SMALL:
        return False
    if not isinstance(value, _SIZED):
        return False
    if len(value) > limit:
        return True
    if kind is str or kind is bytes:
        return False
    for item in value.values() if isinstance(value, dict) else value:
        if type(item) not in _SMALL and isinstance(item, _SIZED) and len(item) > limit:
            return True
    return False


def _type_name(value: Any) -> str:
    try:
        return type(value).__qualname__
    except Exception:  # pragma: no cover - a metaclass that refuses
        return "object"


def _safe_repr(value: Any, limit: int) -> str:
    try:
        text = repr(value)
    except Exception:
        return f"<unrepresentable {_type_name(value)}>"
    return text if isinstance(text, str) else f"<unrepresentable {_type_name(value)}>"


class _Cutter:
    """Converts a value to plain JSON types, counting the encoded length as it goes."""

    def __init__(self, limit: int, redactor: Redactor | None, whole_size: int = 0) -> None:
        self.limit = limit
        self.whole_size = whole_size  # known JSON length of the top value (0: unknown)
        self.used = 0  # exact length of the compact JSON emitted so far
        self.cut = False  # a marker was emitted: enclosing containers stop without another one
        self.redactor = redactor if redactor else None
        self.path: set[int] = set()

    # -- leaves ---------------------------------------------------------------
    def string(self, text: str) -> str:
        room = self.limit - self.used
        if len(text) + 2 <= room:
            clean = clean_text(text)
            size = _encoded_size(clean)
            if size <= room:
                self.used += size
                return clean
        # Escapes (\n, \", \u0001) can make the encoded text up to 6x longer: shrink until it fits.
        keep = min(len(text), max(0, room - 2))
        while True:
            head = clean_text(text[:keep])
            size = _encoded_size(head)
            if size <= max(room, 2) or keep == 0:
                break
            keep = max(0, min(keep - 1, keep * max(room - 2, 0) // max(size - 2, 1)))
        cut = head + f"…[truncated {len(text) - keep} chars]"
        self.used += _encoded_size(cut)
        return cut

    def number(self, value: int | float) -> int | float | str:
        if isinstance(value, int):
            try:
                text = int.__repr__(value)  # raises past sys.get_int_max_str_digits()
            except ValueError:
                return self.string(f"<int of {value.bit_length()} bits>")
            plain: int | float = int(value)
        else:
            if not math.isfinite(value):
                return self.string(float.__repr__(value))  # NaN/Infinity are not JSON
            text = float.__repr__(value)
            plain = float(value)
        if len(text) > self.limit - self.used:  # a 4000-digit int must not blow the bound
            return self.string(text)
        self.used += len(text)
        return plain

    # -- any value ------------------------------------------------------------
    def plain(self, value: Any, depth: int) -> Any:
        if value is None or value is True or value is False:
            self.used += 4 if value is not False else 5
            return value
        if isinstance(value, str):
            return self.string(str.__str__(value))
        if isinstance(value, (int, float)) and not isinstance(value, Enum):
            return self.number(value)
        if depth >= MAX_DEPTH:
            return self.string(TOO_DEEP)
        if id(value) in self.path:
            return self.string("<cycle>")
        self.path.add(id(value))
        used, cut = self.used, self.cut
        try:
            if isinstance(value, (list, tuple)):
                return self.sequence(value, len(value), depth)
            if isinstance(value, dict):
                return self.mapping(value, depth)
            if isinstance(value, (set, frozenset)):
                return self.sequence(_ordered(value, self.limit), len(value), depth)
            return self.other(value, depth)
        except Exception:  # a container that raises when read (len, items, iteration)
            self.used, self.cut = used, cut
            return self.string(f"<unreadable {_type_name(value)}>")
        finally:
            self.path.discard(id(value))

    def other(self, value: Any, depth: int) -> Any:
        if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
            return self.string(value.isoformat())
        if isinstance(value, Decimal):
            return self.string(str(value))  # exact; a float would lose digits
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.string(_bytes_to_str(value, self.limit + 1))
        if isinstance(value, Enum):
            return self.plain(value.value, depth + 1)
        if isinstance(value, Mapping):
            return self.mapping(value, depth)
        return self.string(_safe_repr(value, self.limit))

    # -- containers -----------------------------------------------------------
    # Runs of elements go through json's C encoder in chunks while they fit whole, so a long
    # list of plain values costs C speed; only the elements near the cut (and values the
    # encoder refuses, or that may hold a secret key) are walked one by one.
    def fits_whole(self, part: list[Any] | dict[str, Any], first: bool) -> int:
        """Take ``part`` whole if it encodes and fits: 0. Else the size it would need (-1: not encodable)."""
        if _obviously_big(part, self.limit - self.used):
            return -1
        try:
            text = _encode(part)
        except _FAST_FAILURES:
            return -1
        if not text.isascii():
            if clean_text(text) is not text:  # lone surrogates: cleaned one string at a time instead
                return -1
            text = _one_line(text)
        size = len(text) - 2 + (0 if first else 1)  # without the brackets, with a leading comma
        if self.redactor is not None and self.redactor.may_match(text):
            return -1
        if self.used + size > self.limit:
            return size
        self.used += size
        return 0

    def next_chunk(self, chunk: int, taken: int, needed: int) -> int:
        if needed < 0:  # refused by the encoder (or may hold a secret): narrow down to the culprit
            return chunk // 2
        # Too long: guess how many of these elements fit in the room left.
        return min(taken - 1, taken * max(0, self.limit - self.used) // max(needed, 1))

    def sequence(self, items: Any, total: int, depth: int) -> list[Any]:
        values = items if isinstance(items, (list, tuple)) else list(items)
        out: list[Any] = []
        self.used += 2  # []
        index, chunk = 0, _FIRST_CHUNK
        if depth == 0 and self.whole_size > self.limit:  # known too long: start with what may fit
            chunk = len(values) * self.limit // self.whole_size
        while index < len(values) and not self.cut:
            if chunk > 1:
                part = list(values[index : index + chunk])
                needed = self.fits_whole(part, first=not index)
                if needed == 0:
                    out.extend(part)
                    index += len(part)
                    chunk = min(chunk * 2, _MAX_CHUNK)
                    continue
                chunk = self.next_chunk(chunk, len(part), needed)
                if chunk > 1:
                    continue
            if index:
                self.used += 1  # ,
            if self.used >= self.limit:
                self.cut = True
                out.append(self.marker(f"…[truncated {total - index} items]"))
                break
            out.append(self.plain(values[index], depth + 1))
            index += 1
        return out

    def mapping(self, value: Mapping[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.used += 2  # {}
        total = len(value)
        items = iter(value.items())
        index, chunk = 0, _FIRST_CHUNK
        pending: list[tuple[Any, Any]] = []
        while not self.cut:
            if not pending:
                pending = list(islice(items, max(chunk, 1)))
                if not pending:
                    break
            if chunk > 1 and len(pending) > 1:
                head = pending[:chunk]
                part = dict(head)
                if (
                    len(part) == len(head)
                    and all(type(key) is str for key in part)
                    and out.keys().isdisjoint(part)
                    and not (self.redactor is not None and any(self.redactor.is_secret(key) for key in part))
                ):
                    needed = self.fits_whole(part, first=not index)
                    if needed == 0:
                        out.update(part)
                        index += len(head)
                        del pending[: len(head)]
                        chunk = min(chunk * 2, _MAX_CHUNK)
                        continue
                    chunk = self.next_chunk(chunk, len(head), needed)
                    if chunk > 1:
                        continue
                else:
                    chunk //= 2
            key, item = pending.pop(0)
            if index:
                self.used += 1  # ,
            name = clean_text(_key(key))
            key_size = _encoded_size(name) + 1  # "key":
            if self.used + key_size >= self.limit:
                self.cut = True
                self.used += len(_encode(DICT_MARKER_KEY)) + 1
                out[DICT_MARKER_KEY] = self.marker(f"{total - index} keys")
                break
            index += 1
            if name in out:  # two keys with the same spelling ("1" and 1): keep the first
                self.used -= 1 if len(out) else 0
                continue
            self.used += key_size
            if self.redactor is not None and self.redactor.is_secret(name):
                out[name] = self.marker(REDACTED)
            else:
                out[name] = self.plain(item, depth + 1)
        return out

    def marker(self, text: str) -> str:
        self.used += len(_encode(text))
        return text


def _key(key: Any) -> str:
    if isinstance(key, str):
        return str.__str__(key)
    if key is None or isinstance(key, (bool, int, float)):
        try:
            return json.dumps(key)  # the spelling json.dumps uses for such a key
        except ValueError:
            return "<int key>"
    return _safe_repr(key, 256)


def _ordered(values: set[Any] | frozenset[Any], limit: int) -> list[Any]:
    if len(values) > limit:  # more items than can fit anyway: skip the sort
        return list(islice(values, limit + 1))
    try:
        return sorted(values)
    except Exception:
        return list(values)


def _bytes_to_str(raw: bytes | bytearray | memoryview, most: int) -> str:
    """UTF-8 text (else ``base64:…``) of at most the first ``4 * most`` bytes: enough to fill the bound."""
    data = bytes(raw[: most * 4]) if len(raw) > most * 4 else bytes(raw)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if len(data) < len(raw):  # cut inside a UTF-8 sequence? try without the tail
            try:
                text = data[:-3].decode("utf-8")
            except UnicodeDecodeError:
                return "base64:" + base64.b64encode(data[: most * 3 // 4]).decode("ascii")
        else:
            return "base64:" + base64.b64encode(data[: most * 3 // 4]).decode("ascii")
    return text
