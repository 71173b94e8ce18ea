from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from typing import Any

import pytest

from opentelemetry_instrumentation_clues.legacy.marshaller import EventMarshaller, format_timestamp, json_marshaller
from opentelemetry_instrumentation_clues.values.converter import TOO_DEEP

KEYS = ["event_type", "timestamp", "queue", "metadata", "worker_class", "args"]

# The example event of the seed README ("Event Format").
SEED_EVENT: dict[str, Any] = {
    "event_type": "dequeued",
    "timestamp": "2013-06-04T20:59:58Z",
    "queue": "test_queue",
    "metadata": {
        "event_hash": "0695f49c5e70fc18da91961113e1769a",
        "hostname": "Lances-MacBook-Air.local",
        "process": 30731,
    },
    "worker_class": "TestWorker",
    "args": [1, 2],
}


def marshal(metadata: Any = None, args: Any = (), **overrides: Any) -> str:
    fields: dict[str, Any] = {
        "event_type": "enqueued",
        "timestamp": dt.datetime(2013, 6, 4, 20, 59, 58, tzinfo=dt.timezone.utc),
        "queue": "q",
        "metadata": {} if metadata is None else metadata,
        "worker_class": "jobs.work",
        "args": args,
        **overrides,
    }
    return json_marshaller(*(fields[k] for k in KEYS))


def assert_one_line(line: str) -> Any:
    assert "\n" not in line and "\r" not in line
    assert line.splitlines() == [line]  # also no \u2028, \x85, ... that splitlines() splits on
    line.encode("utf-8")  # valid UTF-8 (no lone surrogates)
    return json.loads(line)


def test_seed_example_golden() -> None:
    seed = SEED_EVENT
    when = dt.datetime(2013, 6, 4, 15, 59, 58, 734000, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    line = json_marshaller(
        seed["event_type"], when, seed["queue"], seed["metadata"], seed["worker_class"], seed["args"]
    )
    decoded = assert_one_line(line)
    assert decoded == seed
    assert list(decoded) == KEYS
    assert list(decoded["metadata"]) == ["event_hash", "hostname", "process"]
    assert line.startswith('{"event_type":"dequeued","timestamp":"2013-06-04T20:59:58Z","queue":"test_queue"')
    assert not line.endswith("\n")


def test_marshaller_matches_the_protocol() -> None:
    marshaller: EventMarshaller = json_marshaller  # mypy checks the signature
    assert marshaller("failed", 0.0, "q", {}, "w", []).startswith('{"event_type":"failed"')


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (dt.datetime(2013, 6, 4, 20, 59, 58, 999999, tzinfo=dt.timezone.utc), "2013-06-04T20:59:58Z"),
        (
            dt.datetime(2013, 6, 4, 22, 59, 58, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2013-06-04T20:59:58Z",
        ),
        (dt.datetime(2013, 6, 4, 20, 59, 58), "2013-06-04T20:59:58Z"),  # naive is taken as UTC
        (1370379598.9, "2013-06-04T20:59:58Z"),
        (1370379598, "2013-06-04T20:59:58Z"),
        (dt.datetime(5, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), "0005-01-02T03:04:05Z"),
        (1e300, "1e+300"),  # out of range: passed through, not raised
        ("yesterday", "yesterday"),
    ],
)
def test_timestamp_rendering(timestamp: Any, expected: str) -> None:
    assert format_timestamp(timestamp) == expected
    assert json.loads(marshal(timestamp=timestamp))["timestamp"] == expected


def test_newlines_and_unicode_stay_on_one_line() -> None:
    args = ["two\nlines", "cr\rlf\r\n", "tab\t", "ünïcødé ✓ 漢字 🎉", "ls\u2028ps\u2029nel\x85", "nul\x00"]
    decoded = assert_one_line(marshal({"note": "a\nb\u2028c"}, args))
    assert decoded["args"] == args  # escaped, not altered
    assert decoded["metadata"] == {"note": "a\nb\u2028c"}
    assert "ünïcødé ✓ 漢字 🎉" in marshal(args=["ünïcødé ✓ 漢字 🎉"])  # not \u-escaped


def test_lone_surrogates_give_valid_utf8() -> None:
    decoded = assert_one_line(marshal(args=["bad \ud800 surrogate", "ok ✓"]))
    assert decoded["args"] == ["bad \ud800 surrogate", "ok ✓"]


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_hostile_values_fall_back_to_strings() -> None:
    when = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    metadata = {
        "bytes": b"raw \xff\xfe",
        "utf8_bytes": "ü".encode(),
        "when": when,
        "day": dt.date(2020, 1, 2),
        "price": Decimal("12.3400000000000000001"),
        "tags": {"b", "a"},
        "opaque": Opaque(),
        "hostile": Hostile(),
        3: "int key",
    }
    decoded = assert_one_line(marshal(metadata, [frozenset({3, 1}), (1, 2), Opaque()]))
    meta = decoded["metadata"]
    assert meta["bytes"] == "base64:cmF3IP/+"
    assert meta["utf8_bytes"] == "ü"
    assert meta["when"] == "2020-01-02T03:04:05+00:00"
    assert meta["day"] == "2020-01-02"
    assert meta["price"] == "12.3400000000000000001"
    assert meta["tags"] == ["a", "b"]
    # Objects without a JSON form are named by their type: their __repr__ is user code and never runs.
    assert meta["opaque"] == "<tests.test_marshaller.Opaque>"
    assert meta["hostile"] == "<tests.test_marshaller.Hostile>"
    assert meta["3"] == "int key"
    assert decoded["args"] == [[1, 3], [1, 2], "<tests.test_marshaller.Opaque>"]


def test_cycles_nan_bad_keys_and_huge_ints_do_not_raise() -> None:
    cyclic: list[Any] = [1]
    cyclic.append(cyclic)
    looped: dict[str, Any] = {"name": "loop"}
    looped["self"] = looped
    metadata = {
        "looped": looped,
        "nan": math.nan,
        "inf": -math.inf,
        ("tuple", "key"): 1,
        "huge": 10**5000,
        "event_hash": "0695f49c5e70fc18da91961113e1769a",
    }
    decoded = assert_one_line(marshal(metadata, [cyclic, "plain"]))
    assert list(decoded) == KEYS
    assert decoded["args"] == [[1, "<cycle>"], "plain"]
    meta = decoded["metadata"]
    assert meta["looped"] == {"name": "loop", "self": "<cycle>"}
    assert meta["nan"] == "nan" and meta["inf"] == "-inf"
    assert meta["('tuple', 'key')"] == 1
    assert meta["huge"] == f"<int of {(10**5000).bit_length()} bits>"
    assert meta["event_hash"] == "0695f49c5e70fc18da91961113e1769a"  # the rest survives intact


def test_shared_but_acyclic_values_are_not_cycles() -> None:
    shared = {"k": "v"}
    decoded = assert_one_line(marshal({"a": shared, "b": shared, "nan": math.nan}))
    assert decoded["metadata"] == {"a": {"k": "v"}, "b": {"k": "v"}, "nan": "nan"}


def test_very_deep_nesting_is_cut_not_raised() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(100_000):
        child: list[Any] = []
        node.append(child)
        node = child
    decoded = assert_one_line(marshal(args=[deep]))
    text = json.dumps(decoded["args"], ensure_ascii=False)
    assert TOO_DEEP in text  # the one converter's marker, as on the events' attributes
