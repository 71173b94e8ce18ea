"""Hostile arguments: never break a job, always bounded, always valid single-line JSON."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rq import Queue, SimpleWorker

from opentelemetry_instrumentation_clues import CluesInstrumentor, LogPublisher, json_marshaller
from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.telemetry.attributes import ARGS, KWARGS
from opentelemetry_instrumentation_clues.telemetry.facts import JobFacts
from opentelemetry_instrumentation_clues.values.attribute_values import attribute_value
from opentelemetry_instrumentation_clues.values.converter import (
    MAX_DEPTH,
    MAX_OVERSHOOT,
    TOO_DEEP,
    bounded_json,
    repr_or_label,
)
from opentelemetry_instrumentation_clues.values.redaction import DEFAULT_POLICY
from tests import hardening_jobs
from tests.hardening_jobs import BadRepr, CountingRepr, Opaque

SUCCESS = ["enqueued", "dequeued", "perform_started", "perform_finished"]
LIMIT = 2048


def assert_one_valid_line(text: str, limit: int | None = None) -> Any:
    assert isinstance(text, str)
    assert text.splitlines() == [text], f"not a single line: {text[:200]!r}"
    text.encode("utf-8")  # valid UTF-8: OTLP's protobuf encoding needs it
    if limit is not None:
        assert len(text) <= limit + MAX_OVERSHOOT, (len(text), limit)
    return json.loads(text)


def cyclic_list() -> list[Any]:
    value: list[Any] = [1, "two"]
    value.append(value)
    return value


def cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"name": "loop"}
    value["self"] = value
    return value


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


HOSTILE: dict[str, Any] = {
    "bytes": b"\x00\xffbinary",
    "utf8 bytes": "héllo".encode(),
    "datetime": dt.datetime(2024, 2, 29, 12, 0, tzinfo=dt.timezone.utc),
    "date": dt.date(2024, 1, 1),
    "decimal": Decimal("3.14159265358979323846264338327950288"),
    "set": {3, 1, 2},
    "frozenset of mixed": frozenset({1, "a"}),
    "custom object": Opaque(7),
    "bad repr": BadRepr(),
    "cyclic list": cyclic_list(),
    "cyclic dict": cyclic_dict(),
    "nan and inf": [math.nan, math.inf, -math.inf],
    "huge int": 10**5000,
    "unicode": "日本語 🚀 Ünïcödé",
    "control chars": "a\x00b\x01c\x1bd\x7f",
    "newlines": "line1\nline2\r\nline3\u2028line4\u2029line5\x85line6",
    "lone surrogate": "bad \udc80 surrogate",
    "non-str keys": {1: "a", None: "b", (1, 2): "c", 2.5: "d"},
    "10 MB string": "x" * 10_000_000,
    "10 MB list": ["y"] * 10_000_000,
    "10k deep": nested(10_000),
    "million-key dict": dict.fromkeys(range(1_000_000), 0),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_bounded_json_of_a_hostile_value_is_one_valid_bounded_line(name):
    for limit in (1, 40, LIMIT):
        assert_one_valid_line(bounded_json([HOSTILE[name]], limit), limit)
        assert_one_valid_line(bounded_json({"arg": HOSTILE[name]}, limit), limit)


def test_a_cut_list_keeps_its_structure_and_says_how_much_was_cut():
    parsed = assert_one_valid_line(bounded_json([f"item-{i}" for i in range(10_000)], 200), 200)
    assert isinstance(parsed, list)
    assert parsed[:3] == ["item-0", "item-1", "item-2"]
    assert parsed[-1].startswith("…[truncated ") and parsed[-1].endswith(" items]")
    dropped = int(parsed[-1].split()[1])
    assert len(parsed) - 1 + dropped == 10_000


def test_a_cut_string_ends_with_the_number_of_chars_dropped():
    (cut,) = assert_one_valid_line(bounded_json(["x" * 10_000_000], LIMIT), LIMIT)
    kept, marker = cut.split("…")
    assert set(kept) == {"x"} and len(kept) > LIMIT - 50
    assert marker == f"[truncated {10_000_000 - len(kept)} chars]"


def test_a_cut_dict_ends_with_a_marker_key():
    parsed = assert_one_valid_line(bounded_json({f"k{i}": i for i in range(5000)}, 300), 300)
    assert parsed["k0"] == 0
    assert parsed["…[truncated]"].endswith(" keys")


def test_deep_nesting_is_cut_with_a_marker():
    text = bounded_json(nested(10_000), LIMIT)
    assert TOO_DEEP in text
    parsed = assert_one_valid_line(text, LIMIT)
    depth = 0
    while isinstance(parsed, list) and parsed:
        parsed, depth = parsed[0], depth + 1
    assert parsed == TOO_DEEP and depth <= MAX_DEPTH + 1


def test_values_json_cannot_hold_are_spelled_readably():
    values = [b"raw", b"\xff\xfe", dt.datetime(2024, 2, 29, 12, 0), Decimal("1.10"), {2, 1}]
    values += [Opaque(3), BadRepr(), math.nan, cyclic_list()]
    parsed = json.loads(bounded_json(values, LIMIT))
    assert parsed[:5] == ["raw", "base64://4=", "2024-02-29T12:00:00", "1.10", [1, 2]]
    # Other objects by their type name: their __repr__ is user code, which never runs by default.
    assert parsed[5:7] == ["<tests.hardening_jobs.Opaque>", "<tests.hardening_jobs.BadRepr>"]
    assert parsed[7] == "nan"
    assert parsed[8] == [1, "two", "<cycle>"]
    # args_repr's describe: repr() where it works, else the type name again.
    with_repr = json.loads(bounded_json(values, LIMIT, describe=repr_or_label))
    assert with_repr[5:7] == ["Opaque(3)", "<tests.hardening_jobs.BadRepr>"]
    assert with_repr[:5] == parsed[:5]


def test_small_plain_arguments_are_encoded_as_before():
    assert bounded_json([1, 2], LIMIT) == "[1,2]"
    assert bounded_json({"a": [1, "b"], "c": None}, LIMIT) == '{"a":[1,"b"],"c":null}'
    assert bounded_json(["日本"], LIMIT) == '["日本"]'


# -- property-based --------------------------------------------------------------------------------

_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**200)  # past OTLP's int64 (10**5000 is in HOSTILE)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(exclude_categories=()))
    | st.binary()
    | st.datetimes()
    | st.decimals(allow_nan=True)
    | st.sets(st.integers(), max_size=5)
    | st.builds(Opaque, st.integers())
)  # no BadRepr here: Hypothesis needs repr() to report an example (BadRepr is in HOSTILE)
_keys = st.text(alphabet=st.characters(exclude_categories=())) | st.integers() | st.none() | st.just("password")
values = st.recursive(
    _leaves,
    lambda children: st.lists(children) | st.tuples(children, children) | st.dictionaries(_keys, children),
    max_leaves=40,
)
_hypothesis = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_hypothesis_slow = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_hypothesis
@given(value=values, limit=st.integers(min_value=1, max_value=400))
def test_bounded_json_is_always_one_valid_bounded_line(value, limit):
    assert_one_valid_line(bounded_json(value, limit), limit)
    assert_one_valid_line(bounded_json(value, limit, DEFAULT_POLICY.redactor), limit)


@_hypothesis
@given(value=values, limit=st.integers(min_value=1, max_value=400))
def test_attribute_value_is_a_valid_bounded_otel_value(value, limit):
    result = attribute_value(value, limit)
    assert isinstance(result, str | bool | int | float)
    if isinstance(result, int) and not isinstance(result, bool):
        assert -(2**63) <= result < 2**63  # OTLP ints are 64-bit
    if isinstance(result, str):
        result.encode("utf-8")
        assert len(result) <= limit + MAX_OVERSHOOT


@_hypothesis
@given(value=values)
def test_redacted_keys_never_show_their_values(value):
    secrets = {"password": "hunter2-secret", "nested": [{"API-Key": "hunter2-secret"}], "v": value}
    text = bounded_json(secrets, 4096, DEFAULT_POLICY.redactor)
    assert "hunter2-secret" not in text
    assert_one_valid_line(text, 4096)


class _FakeJob:
    def __init__(self, args: Any, kwargs: Any) -> None:
        self.id = "job-1"
        self.func_name = "tests.hardening_jobs.accept"
        self.args = args
        self.kwargs = kwargs


@_hypothesis_slow
@given(args=st.lists(values, max_size=4), kwargs=st.dictionaries(st.text(), values, max_size=4), metadata=values)
def test_job_facts_attributes_are_valid_otel_values(args, kwargs, metadata):
    facts = JobFacts.build(_FakeJob(args, kwargs), "q", "0" * 32, 1, {"m": metadata}, CluesConfig(max_value_length=100))
    for name, value in facts.base_attributes.items():
        assert isinstance(value, str | bool | int | float), name
        if isinstance(value, str):
            value.encode("utf-8")
    assert isinstance(assert_one_valid_line(str(facts.base_attributes[ARGS]), 100), list)
    assert isinstance(assert_one_valid_line(str(facts.base_attributes[KWARGS]), 100), dict)


@_hypothesis_slow
@given(
    event_type=st.text(),
    timestamp=st.floats(allow_nan=True) | st.datetimes() | st.none() | st.integers(),
    queue=st.text(alphabet=st.characters(exclude_categories=())),
    metadata=st.dictionaries(_keys, values, max_size=5),
    worker_class=st.text(alphabet=st.characters(exclude_categories=())),
    args=st.lists(values, max_size=5) | values,
)
def test_json_marshaller_always_writes_one_valid_line(event_type, timestamp, queue, metadata, worker_class, args):
    line = json_marshaller(event_type, timestamp, queue, metadata, worker_class, args)
    parsed = assert_one_valid_line(line)
    assert list(parsed) == ["event_type", "timestamp", "queue", "metadata", "worker_class", "args"]


def test_json_marshaller_survives_cycles_deep_nesting_and_bad_reprs():
    for args in (cyclic_list(), nested(10_000), [BadRepr()], [cyclic_dict()], ["a\u2028b\x85c\nd"]):
        assert_one_valid_line(json_marshaller("failed", 0.0, "q", {"m": args}, "w", args))


# -- through real jobs ---------------------------------------------------------------------------

# What a real job can carry through pickle (10k-deep nesting cannot: pickle itself refuses it).
JOB_ARGS = [
    HOSTILE["bytes"],
    HOSTILE["datetime"],
    HOSTILE["decimal"],
    HOSTILE["set"],
    Opaque(7),
    BadRepr(),
    cyclic_list(),
    cyclic_dict(),
    HOSTILE["nan and inf"],
    HOSTILE["unicode"],
    HOSTILE["control chars"],
    HOSTILE["newlines"],
    HOSTILE["lone surrogate"],
    nested(300),
]
JOB_KWARGS = {"blob": "z" * 10_000_000, "when": dt.date(2024, 1, 1), "lines": "a\nb", "weird": BadRepr()}


def run_job(
    redis_conn,
    path: Path,
    captured,
    *args: Any,
    instrumented: bool = True,
    instrument_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    instrumentor = CluesInstrumentor()
    if instrumented:
        instrumentor.instrument(
            tracer_provider=captured.tracer_provider,
            logger_provider=captured.logger_provider,
            event_publisher=LogPublisher(path),
            **(instrument_kwargs or {}),
        )
    try:
        queue = Queue("hostile", connection=redis_conn)
        # An explicit description: rq's own one is built with repr(), which BadRepr refuses.
        job = queue.enqueue(hardening_jobs.accept, args=args, kwargs=kwargs, description="hostile arguments")
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
    finally:
        instrumentor.uninstrument()
    return job


def test_a_job_with_hostile_arguments_runs_and_every_event_is_bounded_and_valid(redis_conn, captured, tmp_path):
    path = tmp_path / "clues.log"
    job = run_job(redis_conn, path, captured, *JOB_ARGS, **JOB_KWARGS)

    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == len(JOB_ARGS) + len(JOB_KWARGS)
    logs = captured.log_attributes()
    assert [a["clues.event_type"] for a in logs] == SUCCESS
    spans = captured.finished_spans()
    assert sorted(e.name for s in spans for e in s.events) == sorted(SUCCESS)
    # The arguments are on every log record and on the job's spans (their events add only their own fields).
    for attributes in logs + [dict(s.attributes or {}) for s in spans]:
        args = assert_one_valid_line(attributes[ARGS], LIMIT)
        kwargs = assert_one_valid_line(attributes[KWARGS], LIMIT)
        assert isinstance(args, list) and args[0] == "base64:AP9iaW5hcnk="
        assert isinstance(kwargs, dict) and kwargs["blob"].endswith(" chars]")

    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["event_type"] for line in lines] == SUCCESS
    for line in lines:
        parsed = assert_one_valid_line(line)
        assert isinstance(parsed["args"], list) and len(line) < 3 * (LIMIT + MAX_OVERSHOOT) + 2000


def test_arguments_are_converted_once_per_job_and_process_not_once_per_event(redis_conn, captured, tmp_path):
    CountingRepr.calls = 0
    run_job(redis_conn, tmp_path / "plain.log", captured, CountingRepr(), CountingRepr(), instrumented=False)
    by_rq = CountingRepr.calls
    CountingRepr.calls = 0
    run_job(
        redis_conn,
        tmp_path / "clues.log",
        captured,
        CountingRepr(),
        CountingRepr(),
        instrument_kwargs={"args_repr": True},
    )
    assert captured.event_types() == SUCCESS
    # one JobFacts at enqueue and one at dequeue, each converting both arguments once
    assert CountingRepr.calls - by_rq == 4
    assert json.loads(captured.log_attributes()[0][ARGS]) == ["CountingRepr()", "CountingRepr()"]


def test_by_default_no_argument_repr_runs_and_arguments_are_named_by_type(redis_conn, captured, tmp_path):
    CountingRepr.calls = 0
    run_job(redis_conn, tmp_path / "clues.log", captured, CountingRepr(), job_kwarg=CountingRepr())
    assert captured.event_types() == SUCCESS
    assert CountingRepr.calls == 0  # description= is given, so rq itself calls no repr either
    for attributes in captured.log_attributes():
        assert json.loads(attributes[ARGS]) == ["<tests.hardening_jobs.CountingRepr>"]
        assert json.loads(attributes[KWARGS]) == {"job_kwarg": "<tests.hardening_jobs.CountingRepr>"}


class _HostileDict(dict):
    def items(self):  # type: ignore[override]
        raise RuntimeError("items refused")

    def __len__(self) -> int:
        raise RuntimeError("len refused")


class _HostileList(list):
    def __iter__(self):  # type: ignore[override]
        raise RuntimeError("iteration refused")


def test_containers_that_raise_when_read_do_not_break_the_conversion():
    for value in (_HostileDict(a=1), _HostileList([1, 2]), [_HostileDict(a=1), _HostileList([3])]):
        for limit in (5, LIMIT):
            assert_one_valid_line(bounded_json(value, limit), limit)
            assert_one_valid_line(bounded_json({"password": value}, limit, DEFAULT_POLICY.redactor), limit)
