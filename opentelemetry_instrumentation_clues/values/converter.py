"""JSON text of arbitrary values: always valid, always one line, no user code; bounded or whole.

The one converter of the package: :func:`bounded_json` for attributes (job arguments,
metadata), :func:`whole_json` for the legacy marshaller's lines.

``bounded_json(value, limit)`` returns JSON text of at most ``limit + MAX_OVERSHOOT``
characters. Small, plain values (the common case) are encoded once by json's C
encoder. Anything else — too long, not JSON-serialisable, cyclic, too deep, or
holding a key that may need redacting — goes through a walk that converts and cuts
*structurally*, visiting only as much of the value as fits: a 10 MB string, a
million-element list or a dict of 2,000 long lists costs about ``limit`` characters
of work, not the size of the value. Counts in cut markers come from ``len()`` of
builtin containers, never from walking them.

No user code runs here unless the caller asks for it: json's C encoder only ever sees
values made of exact builtin types (it would call a dict subclass's ``items()`` or a list
subclass's ``__iter__``), subclasses of builtins are read through the builtin's own
methods, and any other object is spelled by its type, ``<module.QualName>``. A
``describe`` function (``repr`` under a time limit, see values/attribute_values.py) may replace that.

Where the value is cut, a marker says so and everything after it is dropped:

* a long string ends with ``…[truncated N chars]``;
* a list gets a last element ``"…[truncated N items]"``;
* a dict gets a last key ``"…[truncated]"`` whose value is ``"N keys"``;
* a value nested deeper than :data:`MAX_DEPTH` becomes ``"…[truncated: too deep]"``.

Values json cannot represent become strings: datetimes and dates ISO-8601, Decimals
exactly, bytes as UTF-8 (else ``base64:…``), sets as (sorted) lists, enums by value,
cycles as ``"<cycle>"``, other objects by their type name (or ``describe``).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import operator
import sys
from bisect import bisect_right
from collections.abc import Callable
from decimal import Decimal
from enum import Enum
from itertools import accumulate, islice
from typing import Any

from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.values.redaction import REDACTED, Redactor

MAX_DEPTH = 32
TOO_DEEP = "…[truncated: too deep]"
DICT_MARKER_KEY = "…[truncated]"
# The most a result may exceed ``limit`` by: one cut marker with its quotes and separators.
MAX_OVERSHOOT = 64
_UNBOUNDED = sys.maxsize // 8  # whole_json's "limit": more than any value, and islice() still takes limit + 1
_FIRST_CHUNK = 16
_MAX_CHUNK = 512

_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _refuse(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def compact_json_encoder(*, allow_nan: bool) -> Callable[[Any], str]:
    """Compact JSON text of plain values, by json's C encoder built once: ``json.dumps`` and
    ``JSONEncoder.encode`` build one per call, which costs more than encoding small values.
    Objects without a JSON form raise TypeError. No cycle bookkeeping (so one encoder serves
    every thread): a cycle ends in RecursionError."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - interpreters without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, allow_nan=allow_nan, separators=(",", ":")).encode
    chunks = make(None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, allow_nan)

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    return encode


_encode = compact_json_encoder(allow_nan=False)  # a cycle: the caller takes the slow path, which handles cycles
_quoted_ascii: Callable[[str], str] = json.encoder.encode_basestring_ascii
# What json's C encoder may raise, including from user code it runs (a dict subclass's items()).
_FAST_FAILURES = (Exception,)


def bounded_json(value: Any, limit: int, redactor: Redactor | None = None, describe: Describe | None = None) -> str:
    """JSON text of ``value``: valid, single line, at most ``limit + MAX_OVERSHOOT`` chars; never raises.

    ``describe`` spells objects that have no JSON form; by default their type name, so
    no user code (``__repr__``, a subclass's ``items()``) runs on the caller's thread."""
    kind = type(value)  # exact builtins only below: a subclass's __len__ is user code
    if (kind is dict or kind is list or kind is tuple) and not value:
        return "{}" if kind is dict else "[]"  # no kwargs, or no args: most jobs
    whole_size = 0  # JSON length of the whole value, when json could encode it
    if _plain_size(value, limit) >= 0:  # exact builtin types only, and small enough to encode whole
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
        text = _encode(_Cutter(limit, redactor, whole_size, describe or type_label).plain(value, 0))
    except Exception:  # belt and braces: the walk only builds str, int, float, bool, None, list, dict
        text = _encode(type_label(value))
    text = _one_line(text)
    if len(text) > limit + MAX_OVERSHOOT:  # not expected: keeps the bound unconditional
        text = _as_cut_string(text, limit)
    return text


def whole_json(value: Any) -> str:
    """JSON text of all of ``value``, uncut: valid, single line; never raises.

    The legacy marshaller's converter: the same walk, spellings and markers as
    :func:`bounded_json` (no user code, ``<module.QualName>`` for objects, ``<cycle>``,
    nesting past :data:`MAX_DEPTH` marked), only without a length limit."""
    if _plain_size(value, _UNBOUNDED) >= 0:  # exact builtin types only: json's C encoder takes it
        try:
            return _one_line(_encode(value))
        except _FAST_FAILURES:
            pass
    try:
        return _one_line(_encode(_Cutter(_UNBOUNDED, None).plain(value, 0)))
    except Exception:  # belt and braces: the walk only builds str, int, float, bool, None, list, dict
        return _encode(type_label(value))


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


_LEAF_TYPES = frozenset((str, int, float, bool, type(None)))
_STR_ONLY = frozenset((str,))
_INT_ONLY = frozenset((int,))


def _leaves_size(items: Any, count: int) -> int:
    """A lower bound of the JSON length of ``count`` exact scalars (without separators), or -1.

    Runs at C speed (``map`` over builtins): a list of plain values is the common large argument."""
    kinds = set(map(type, items))
    if not kinds <= _LEAF_TYPES:
        return -1
    if kinds == _STR_ONLY:
        return 2 * count + sum(map(len, items))
    if kinds == _INT_ONLY:
        return count + sum(map(int.bit_length, items)) // 4  # a decimal digit holds less than 4 bits
    if str in kinds:
        return count + sum(len(item) + 1 for item in items if type(item) is str)
    return count


TOO_BIG = -2


def _plain_size(value: Any, budget: int) -> int:
    """A lower bound of the compact JSON length of ``value``, or -1, or :data:`TOO_BIG`.

    :data:`TOO_BIG` when it needs more than ``budget`` chars; -1 when ``value`` holds anything
    but exact ``str``/``int``/``float``/``bool``/``None``, ``list``/``tuple`` and ``dict`` with
    ``str`` keys (json's C encoder would run user code on subclasses) or nests deeper than
    :data:`MAX_DEPTH`. A container is only looked into once its length alone fits the budget, and every node
    adds at least one char, so this reads O(``budget``) nodes at most, whatever the size of
    ``value`` (a cycle, too, soon exceeds the budget)."""
    size = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is list or kind is tuple:
            size += 1 + len(item)  # brackets and commas
            if depth >= MAX_DEPTH:
                return -1
            if size > budget:
                return TOO_BIG
            leaves = _leaves_size(item, len(item))
            if leaves >= 0:
                size += leaves
            else:
                stack.extend([(element, depth + 1) for element in item])
        elif kind is dict:
            size += 1 + 2 * len(item)  # braces, colons and commas
            if depth >= MAX_DEPTH:
                return -1
            if size > budget:
                return TOO_BIG
            if set(map(type, item)) != _STR_ONLY and item:
                return -1
            size += _leaves_size(item, len(item))  # the keys
            leaves = _leaves_size(item.values(), len(item))
            if leaves >= 0:
                size += leaves
            else:
                stack.extend([(element, depth + 1) for element in item.values()])
        elif kind is str:
            size += len(item) + 2
        elif kind is int:
            size += 1 + item.bit_length() // 4
        elif kind is float or kind is bool or item is None:  # identity: hashing a type may run its metaclass
            size += 3
        else:
            return -1
        if size > budget:
            return TOO_BIG
    return size


_QUALNAME = type.__dict__["__qualname__"]
_MODULE = type.__dict__["__module__"]


def type_label(value: Any) -> str:
    """``<module.QualName>`` of ``value``'s type: names an argument without running its code.

    Read through ``type``'s own descriptors, so not even a metaclass's properties run."""
    kind = type(value)
    try:
        name = _QUALNAME.__get__(kind)
        module = _MODULE.__get__(kind)
    except Exception:  # pragma: no cover - a type without the usual attributes
        return "<object>"
    if not isinstance(name, str):  # pragma: no cover
        return "<object>"
    if type(module) is str and module != "builtins":
        name = f"{module}.{name}"
    return f"<{name}>"


_REPR_SAFE = frozenset((str, int, float, complex, bool, type(None), bytes))


def builtin_repr(value: Any, depth: int = 0) -> str | None:
    """``repr`` of a small tuple or frozenset of builtin scalars (a dict key such as ``("a", 1)``); else None.

    Only exact builtin types: their ``repr`` is the interpreter's, never user code."""
    kind = type(value)
    if kind in _REPR_SAFE:
        try:
            return repr(value)
        except ValueError:  # an int past sys.get_int_max_str_digits()
            return None
    small = (kind is tuple or kind is frozenset) and depth < 4 and len(value) <= 64
    if small and all(builtin_repr(item, depth + 1) is not None for item in value):
        return repr(value)
    return None


def key_label(key: Any) -> str:
    """A dict key with no JSON spelling: a tuple of builtins by its repr, anything else by type name."""
    text = builtin_repr(key)
    return type_label(key) if text is None else text


Describe = Callable[[Any], str]


def repr_or_label(value: Any) -> str:
    """``repr(value)``, else its type label: the ``args_repr`` opt-in's ``describe``.

    Runs user code: only called off the caller's thread, under a time limit (values/attribute_values.py)."""
    try:
        text = repr(value)
    except Exception as exc:
        errors.record(Place.ARGS_REPR, exc)
        return type_label(value)
    return text if type(text) is str else type_label(value)


class _Cutter:
    """Converts a value to plain JSON types, counting the encoded length as it goes."""

    def __init__(
        self, limit: int, redactor: Redactor | None, whole_size: int = 0, describe: Describe = type_label
    ) -> None:
        self.limit = limit
        self.describe = describe  # spells objects without a JSON form
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

    def number(self, value: Any, is_int: bool) -> int | float | str:
        if is_int:
            try:
                text = int.__repr__(value)  # raises past sys.get_int_max_str_digits()
            except ValueError:
                return self.string(f"<int of {int.bit_length(value)} bits>")
            plain: int | float = int.__int__(value)  # not int(): a subclass's __int__ is user code
        else:
            plain = float.__float__(value)
            if not math.isfinite(plain):
                return self.string(float.__repr__(plain))  # NaN/Infinity are not JSON
            text = float.__repr__(plain)
        if len(text) > self.limit - self.used:  # a 4000-digit int must not blow the bound
            return self.string(text)
        self.used += len(text)
        return plain

    # -- any value ------------------------------------------------------------
    # Dispatch is on type(value) with issubclass(): isinstance() may read a user's __class__.
    # Subclasses of builtins are read through the builtin's methods (list.__getitem__,
    # dict.items, str.__str__), so their overrides never run.
    def plain(self, value: Any, depth: int) -> Any:
        if value is None or value is True or value is False:
            self.used += 4 if value is not False else 5
            return value
        kind = type(value)
        if issubclass(kind, Enum):
            try:
                member_value = object.__getattribute__(value, "_value_")
            except Exception:  # pragma: no cover - an Enum member always has one
                return self.string(self.describe(value))
            return self.plain(member_value, depth + 1) if depth < MAX_DEPTH else self.string(TOO_DEEP)
        if issubclass(kind, str):
            return self.string(str.__str__(value))
        if issubclass(kind, int):
            return self.number(value, True)
        if issubclass(kind, float):
            return self.number(value, False)
        if depth >= MAX_DEPTH:
            return self.string(TOO_DEEP)
        if id(value) in self.path:
            return self.string("<cycle>")
        self.path.add(id(value))
        used, cut = self.used, self.cut
        try:
            if kind is list or kind is tuple:
                return self.sequence(value, len(value), depth)
            if issubclass(kind, (list, tuple)):
                base: Any = list if issubclass(kind, list) else tuple
                head = base.__getitem__(value, slice(0, self.limit + 1))  # no more can fit
                return self.sequence(head, base.__len__(value), depth)
            if issubclass(kind, dict):
                return self.mapping(value, depth)
            if issubclass(kind, (set, frozenset)):
                base = set if issubclass(kind, set) else frozenset
                return self.sequence(_ordered(base.__iter__(value), self.limit), base.__len__(value), depth)
            return self.other(value, kind)
        except Exception:  # not expected (builtins' own methods); keeps the walk total
            self.used, self.cut = used, cut
            return self.string(f"<unreadable {type_label(value)[1:-1]}>")
        finally:
            self.path.discard(id(value))

    def other(self, value: Any, kind: type) -> Any:
        if issubclass(kind, _dt.datetime):
            return self.string(_dt.datetime.isoformat(value))
        if issubclass(kind, _dt.date):
            return self.string(_dt.date.isoformat(value))
        if issubclass(kind, _dt.time):
            return self.string(_dt.time.isoformat(value))
        if issubclass(kind, Decimal):
            return self.string(Decimal.__str__(value))  # exact; a float would lose digits
        for base in (bytes, bytearray, memoryview):
            if issubclass(kind, base):
                return self.string(_bytes_to_str(value, base, self.limit + 1))
        return self.string(self.describe(value))

    # -- containers -----------------------------------------------------------
    # Runs of elements go through json's C encoder in chunks while they fit whole, so a long
    # list of plain values costs C speed; only the elements near the cut (and values the
    # encoder refuses, or that may hold a secret key) are walked one by one.
    def fits_whole(self, part: list[Any] | dict[str, Any], first: bool) -> int:
        """Take ``part`` whole if it encodes and fits: 0. Else the size it would need (-1: not encodable,
        :data:`TOO_BIG`: too long, not read to the end)."""
        plain = _plain_size(part, self.limit - self.used + 2)
        if plain < 0:
            return plain
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

    def next_chunk(self, chunk: int, taken: int, needed: int, done: int = 0, done_size: int = 0) -> int:
        """How many elements to try next, after ``taken`` did not fit whole (``done`` did, in ``done_size`` chars)."""
        if needed == TOO_BIG and done:  # guess from the elements taken so far, shrinking by 1/8 at least
            return min(taken * 7 // 8, max(0, self.limit - self.used) * done // max(done_size, 1))
        if needed < 0:  # refused by the encoder (or may hold a secret): narrow down to the culprit
            return min(chunk, taken) // 2
        # Too long: guess how many of these elements fit in the room left.
        return min(taken - 1, taken * max(0, self.limit - self.used) // max(needed, 1))

    def sequence(self, values: list[Any] | tuple[Any, ...], total: int, depth: int) -> list[Any]:
        """``values`` (exact list or tuple) as a list; ``total`` is the length of the original."""
        out: list[Any] = []
        self.used += 2  # []
        start = self.used
        index, chunk = self.leading_scalars(values, out), _FIRST_CHUNK
        if index and self.used + 2 >= self.limit:
            chunk = 1  # the next element does not fit whole: it is cut below
        elif depth == 0 and self.whole_size > self.limit:  # known too long: start with what may fit
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
                chunk = self.next_chunk(chunk, len(part), needed, index, self.used - start)
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
        if not self.cut and index < total:  # a set or subclass read only as far as could fit
            self.cut = True
            out.append(self.marker(f"…[truncated {total - index} items]"))
        return out

    def leading_scalars(self, values: list[Any] | tuple[Any, ...], out: list[Any]) -> int:
        """Take as many leading elements as fit whole when all that could fit are ints, or ASCII strs.

        The common long argument (ids, names): their JSON lengths are summed by ``map`` and
        ``accumulate`` over builtins and the cut found by bisection, all at C speed, instead of
        encoding trial chunks. Returns how many were taken (0: not such a list; the chunks do it)."""
        room = self.limit - self.used
        probe = values[:_FIRST_CHUNK]
        if len(probe) < 2:
            return 0
        # Each element takes 2 chars at least, with its comma; a str of the probe's mean length more.
        mean = sum(map(len, probe)) / len(probe) if set(map(type, probe)) == _STR_ONLY else 0
        head = values[: min(room // 2, int(1.5 * room / (mean + 3))) + 2]
        kinds = set(map(type, head))
        if kinds == _INT_ONLY:  # no comma inside an int: the cut is the last comma that fits
            try:
                text = _encode(head)  # raises past sys.get_int_max_str_digits()
            except ValueError:
                return 0
            if len(text) - 2 <= room:
                taken, size = len(head), len(text) - 2
            else:
                comma = text.rfind(",", 0, room + 2)
                taken, size = (text.count(",", 0, comma) + 1, comma - 1) if comma > 0 else (0, 0)
        elif kinds == _STR_ONLY and all(map(str.isascii, head)):
            lengths = list(map(len, head))
            if len(_encode(head)) == sum(lengths) + 3 * len(head) + 1:  # nothing escaped: "a","b"
                lengths_json = accumulate(lengths)
                steps = range(2, 3 * len(head) + 2, 3)  # quotes and commas
            else:
                lengths_json = accumulate(map(len, map(_quoted_ascii, head)))
                steps = range(len(head))  # commas
            ends = list(map(operator.add, lengths_json, steps))
            taken = bisect_right(ends, room)  # ends[i]: length of the first i + 1 strings with their commas
            size = ends[taken - 1] if taken else 0
        else:
            return 0
        out.extend(head[:taken])
        self.used += size
        return taken

    def mapping(self, value: dict[Any, Any], depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        self.used += 2  # {}
        start = self.used
        total = dict.__len__(value)
        items = iter(dict.items(value))  # not value.items(): a subclass's override is user code
        index, chunk = 0, _FIRST_CHUNK
        pending: list[tuple[Any, Any]] = []
        while not self.cut:
            if not pending:
                pending = list(islice(items, max(chunk, 1)))
                if not pending:
                    break
            if chunk > 1 and len(pending) > 1:
                head = pending[:chunk]
                # str keys only: dict() hashes the keys again, and another key type's __hash__ is user code
                part = dict(head) if all(type(key) is str for key, _ in head) else {}
                if (
                    len(part) == len(head)
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
                    chunk = self.next_chunk(chunk, len(head), needed, index, self.used - start)
                    if chunk > 1:
                        continue
                else:
                    chunk //= 2
            key, item = pending.pop(0)
            if index:
                self.used += 1  # ,
            name = clean_text(self.key(key))
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

    def key(self, key: Any) -> str:
        kind = type(key)
        if issubclass(kind, str):
            return str.__str__(key)
        if key is None or key is True or key is False:
            return "null" if key is None else "true" if key else "false"
        if issubclass(kind, int) and not issubclass(kind, Enum):
            try:
                return int.__repr__(key)  # the spelling json.dumps uses for such a key
            except ValueError:
                return "<int key>"
        if issubclass(kind, float) and not issubclass(kind, Enum):
            return json.dumps(float.__float__(key))  # NaN, Infinity: as json.dumps spells such keys
        text = builtin_repr(key)
        return cut_text(self.describe(key) if text is None else text, 256)


_SORTABLE = frozenset((str, int, float))


def _ordered(values: Any, limit: int) -> list[Any]:
    """At most ``limit + 1`` items of a set's iterator; sorted when they are all of one builtin kind.

    More items than that cannot fit anyway; only builtin elements are sorted, since
    comparing other objects runs their ``__lt__``."""
    head = list(islice(values, limit + 1))
    kinds = {type(item) for item in head}
    if (len(kinds) == 1 and kinds <= _SORTABLE) or kinds <= {int, float}:
        try:
            return sorted(head)
        except Exception:  # pragma: no cover - NaN-free builtins compare fine
            return head
    return head


def _bytes_to_str(raw: Any, base: Any, most: int) -> str:
    """UTF-8 text (else ``base64:…``) of at most the first ``4 * most`` bytes: enough to fill the bound.

    Sliced with the builtin ``base``'s own ``__getitem__``: a subclass's override is user code."""
    size = base.__len__(raw)
    data = bytes(base.__getitem__(raw, slice(0, most * 4)))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if len(data) < size:  # cut inside a UTF-8 sequence? try without the tail
            try:
                text = data[:-3].decode("utf-8")
            except UnicodeDecodeError:
                return "base64:" + base64.b64encode(data[: most * 3 // 4]).decode("ascii")
        else:
            return "base64:" + base64.b64encode(data[: most * 3 // 4]).decode("ascii")
    return text
