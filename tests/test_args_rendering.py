"""Describing a job's arguments runs no user code and costs O(max_value_length), whatever the arguments.

Issue 17: a ``__repr__`` that sleeps or hangs must not slow or block an enqueue or a worker;
objects without a JSON form are named by type unless ``args_repr`` opts into a time-limited
``repr``. Issue 18: only the part of an argument that fits the limit is read.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rq import Queue

from opentelemetry_instrumentation_clues import CluesInstrumentor, LogPublisher, json_marshaller
from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.instrumentation.preprocessing import storable
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.telemetry.attributes import ARGS, KWARGS
from opentelemetry_instrumentation_clues.telemetry.facts import JobFacts, metadata_attributes
from opentelemetry_instrumentation_clues.values import converter as bounded_module
from opentelemetry_instrumentation_clues.values.attribute_values import attribute_value
from opentelemetry_instrumentation_clues.values.converter import MAX_OVERSHOOT
from opentelemetry_instrumentation_clues.values.converter import bounded_json as events_bounded_json
from opentelemetry_instrumentation_clues.values.redaction import DEFAULT_POLICY
from tests import hardening_jobs
from tests.hardening_jobs import HangingRepr, SlowRepr
from tests.processes import REPO_ROOT, env_with, instrumented, rq_worker_cmd, run

# -- no user code ----------------------------------------------------------------------------------

CALLS: list[str] = []


def _spy(name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        CALLS.append(f"{type(self).__name__}.{name}")
        raise AssertionError(f"clues called {name}")

    return method


_HOOKS = ("__repr__", "__str__", "__format__", "__len__", "__iter__", "__getitem__", "__lt__", "__eq__", "__bool__")


def _spying(base: type, name: str, *extra: str) -> type:
    """A subclass of ``base`` whose every overridable hook records a call (and raises)."""
    namespace: dict[str, Any] = {hook: _spy(hook) for hook in (*_HOOKS, *extra)}
    namespace["__hash__"] = base.__hash__  # hashed while the test builds its values
    namespace["__getattribute__"] = _spy("__getattribute__")  # every attribute read, __class__ too
    return type(name, (base,), namespace)


SpyObject = _spying(object, "SpyObject")
SpyDict = _spying(dict, "SpyDict", "items", "keys", "values", "get")
SpyList = _spying(list, "SpyList")
SpyTuple = _spying(tuple, "SpyTuple")
SpySet = _spying(set, "SpySet")
SpyStr = _spying(str, "SpyStr", "encode")
SpyInt = _spying(int, "SpyInt", "__int__", "__index__", "__le__", "__ge__", "bit_length")
SpyFloat = _spying(float, "SpyFloat", "__float__")
SpyDatetime = _spying(dt.datetime, "SpyDatetime", "isoformat")
SpyBytes = _spying(bytes, "SpyBytes", "decode")


def hostile_values() -> dict[str, Any]:
    key = SpyObject()
    return {
        "object": SpyObject(),
        "dict": SpyDict({"a": 1, "password": "hunter2", key: 2}),
        "list": SpyList([1, SpyObject()]),
        "tuple": SpyTuple((1, 2)),
        "set": SpySet({3, 1}),
        "str": SpyStr("text"),
        "int": SpyInt(7),
        "big int": SpyInt(2**70),
        "float": SpyFloat(1.5),
        "datetime": SpyDatetime(2024, 1, 2, 3, 4, 5),
        "bytes": SpyBytes(b"raw"),
        "keys": {key: 1, SpyStr("k"): 2, SpyInt(3): 3},
    }


class _FakeJob:
    id = "job-1"
    func_name = "tests.hardening_jobs.accept"

    def __init__(self, args: Any, kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs


def test_rendering_arguments_and_metadata_calls_no_method_of_theirs():
    values = hostile_values()
    CALLS.clear()
    rendered = []
    for limit in (5, 40, 2048):
        for redactor in (None, DEFAULT_POLICY.redactor):
            rendered.append(events_bounded_json(values, limit, redactor))
            rendered.append(events_bounded_json(list(values.values()), limit, redactor))
        rendered.extend(str(attribute_value(value, limit)) for value in values.values())
        rendered.extend(str(v) for v in metadata_attributes({SpyObject(): SpyObject(), **values}, limit).values())
    facts = JobFacts.build(_FakeJob(list(values.values()), values), "q", "0" * 32, 1, values, CluesConfig())
    line = json_marshaller("enqueued", 0.0, "q", values, "w", list(values.values()))
    stored = [storable(value) for value in values.values()]
    assert CALLS == []

    parsed = json.loads(events_bounded_json(values, 2048, DEFAULT_POLICY.redactor))
    assert CALLS == []
    assert parsed["object"] == "<tests.test_args_rendering.SpyObject>"
    assert parsed["dict"] == {"a": 1, "password": "[REDACTED]", "<tests.test_args_rendering.SpyObject>": 2}
    assert parsed["list"] == [1, "<tests.test_args_rendering.SpyObject>"]
    assert parsed["set"] == [1, 3] and parsed["str"] == "text" and parsed["int"] == 7
    assert parsed["big int"] == 2**70 and parsed["float"] == 1.5 and parsed["bytes"] == "raw"
    assert parsed["datetime"] == "2024-01-02T03:04:05"
    assert json.loads(str(facts.base_attributes[ARGS]))[0] == "<tests.test_args_rendering.SpyObject>"
    assert json.loads(line)["args"][0] == "<tests.test_args_rendering.SpyObject>"
    assert stored[0] == "<tests.test_args_rendering.SpyObject>" and stored[2] == [
        1,
        "<tests.test_args_rendering.SpyObject>",
    ]


# -- bounded work ----------------------------------------------------------------------------------


def render_work(monkeypatch: pytest.MonkeyPatch, value: Any, limit: int, redactor: Any = None) -> tuple[int, str]:
    """Work done to render ``value``: Python lines run in values/converter.py plus chars json's C encoder wrote.

    Counted, not timed: both grow with every element the renderer reads."""
    lines = 0
    encoded = 0
    real_encode = bounded_module._encode

    def counting_encode(part: Any) -> str:
        nonlocal encoded
        text = real_encode(part)
        encoded += len(text)
        return text

    def local(frame: Any, event: str, arg: Any) -> Any:
        nonlocal lines
        if event == "line":
            lines += 1
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename == bounded_module.__file__ else None

    monkeypatch.setattr(bounded_module, "_encode", counting_encode)
    sys.settrace(tracer)
    try:
        text = bounded_module.bounded_json(value, limit, redactor)
    finally:
        sys.settrace(None)
        monkeypatch.setattr(bounded_module, "_encode", real_encode)
    return lines + encoded, text


LIMIT = 2048


@pytest.mark.parametrize(
    "shape",
    [
        "ints",
        "dict of lists",
        "strings",
        "nested lists",
        "set",
        "dict subclass",
        "list of objects",
        "secret keys",
    ],
)
def test_rendering_reads_only_what_fits_the_limit(monkeypatch, shape):
    def make(size: int) -> Any:
        return {
            "ints": lambda: list(range(size * 100)),
            "dict of lists": lambda: {f"key-{i}": list(range(100)) for i in range(size)},
            "strings": lambda: [f"item {i}" for i in range(size * 100)],
            "nested lists": lambda: [[[i, i + 1]] * 10 for i in range(size * 10)],
            "set": lambda: set(range(size * 100)),
            "dict subclass": lambda: SpyDict({f"k{i}": [i] * 50 for i in range(size * 2)}),
            "list of objects": lambda: [SpyObject() for _ in range(size * 10)],
            "secret keys": lambda: [{"token": i, "user": [i] * 20} for i in range(size * 4)],
        }[shape]()

    redactor = DEFAULT_POLICY.redactor
    small_work, small_text = render_work(monkeypatch, make(20), LIMIT, redactor)
    big_work, big_text = render_work(monkeypatch, make(2000), LIMIT, redactor)
    assert "…[truncated" in small_text and "…[truncated" in big_text  # both are cut: the small one just so
    assert len(big_text) <= LIMIT + MAX_OVERSHOOT
    # 100 times the argument, about the same work: what is past the cut is never read.
    assert big_work <= 2 * small_work + 2000, (small_work, big_work)
    assert big_work <= 60 * LIMIT, big_work


def test_cut_markers_count_what_was_not_read(monkeypatch):
    _, text = render_work(monkeypatch, {f"key-{i}": list(range(100)) for i in range(2000)}, LIMIT)
    parsed = json.loads(text)
    # The cut falls inside the last list kept; the marker there says how much of it was dropped.
    *_, last = parsed.values()
    assert last[-1] == f"…[truncated {100 - len(last) + 1} items]"
    assert list(parsed)[:2] == ["key-0", "key-1"] and len(parsed) < 20
    _, text = render_work(monkeypatch, set(range(1_000_000)), 100)
    parsed = json.loads(text)
    assert parsed[-1] == f"…[truncated {1_000_000 - len(parsed) + 1} items]"


# -- real processes --------------------------------------------------------------------------------

JOBS_PER_KIND = 3


def enqueue_jobs(queue: Queue, marker: Path) -> float:
    """Enqueue 3 jobs with an argument whose repr sleeps 2 s, 3 whose repr hangs; seconds taken."""
    started = time.perf_counter()
    for i in range(JOBS_PER_KIND):
        queue.enqueue(hardening_jobs.accept, SlowRepr(str(marker)), i, description=f"slow repr {i}")
        queue.enqueue(hardening_jobs.accept, HangingRepr(str(marker)), i, description=f"hanging repr {i}")
    return time.perf_counter() - started


def work_burst(redis_url: str, queue: str, env: dict[str, str], with_clues: bool) -> float:
    command = rq_worker_cmd(redis_url, queue, "-w", "rq.Worker")
    started = time.perf_counter()
    run(instrumented(*command) if with_clues else command, env, timeout=120)
    return time.perf_counter() - started


def test_slow_and_hanging_reprs_never_run_at_enqueue_or_in_a_forking_worker(redis_conn, redis_url, tmp_path, captured):
    marker = tmp_path / "repr-called.txt"
    log = tmp_path / "clues.log"
    env = env_with(
        {
            "OTEL_SERVICE_NAME": "args-repr",
            "OTEL_PYTHON_CLUES_PUBLISHER": f"file://{log}",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
    )
    # Plain rq, description= given: rq itself calls no repr.
    plain_queue = Queue("plain-repr", connection=redis_conn)
    plain_enqueue = enqueue_jobs(plain_queue, marker)
    plain_work = work_burst(redis_url, "plain-repr", env, with_clues=False)

    instrumentor = CluesInstrumentor()
    instrumentor.instrument(tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider)
    try:
        clues_queue = Queue("clues-repr", connection=redis_conn)
        clues_enqueue = enqueue_jobs(clues_queue, marker)
    finally:
        instrumentor.uninstrument()
    clues_work = work_burst(redis_url, "clues-repr", env, with_clues=True)

    assert not marker.exists(), marker.read_text()  # no repr ran: not at enqueue, not in the worker or horse
    jobs = [*plain_queue.finished_job_registry.get_job_ids(), *clues_queue.finished_job_registry.get_job_ids()]
    assert len(jobs) == 4 * JOBS_PER_KIND
    # Each repr would have cost 2 s (or forever): far beyond these generous margins for a loaded machine.
    assert clues_enqueue < plain_enqueue + 1.0, (plain_enqueue, clues_enqueue)
    assert clues_work < plain_work + 5.0, (plain_work, clues_work)

    names = {"<tests.hardening_jobs.SlowRepr>", "<tests.hardening_jobs.HangingRepr>"}
    enqueued = [json.loads(a[ARGS]) for a in captured.log_attributes() if a["clues.event_type"] == "enqueued"]
    assert {args[0] for args in enqueued} == names and len(enqueued) == 2 * JOBS_PER_KIND
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    worker_events = [line for line in lines if line["event_type"] in ("dequeued", "perform_finished")]
    assert len(worker_events) == 4 * JOBS_PER_KIND
    assert {line["args"][0] for line in worker_events} == names


def test_args_repr_opt_in_is_time_limited_and_falls_back_to_the_type_name(redis_conn, tmp_path, captured):
    marker = tmp_path / "repr-called.txt"
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(
        tracer_provider=captured.tracer_provider,
        logger_provider=captured.logger_provider,
        event_publisher=LogPublisher(tmp_path / "clues.log"),
        args_repr=True,
    )
    queue = Queue("opt-in", connection=redis_conn)
    took = []
    try:
        queue.enqueue(hardening_jobs.accept, hardening_jobs.Opaque(5), kw=hardening_jobs.Opaque(6), description="ok")
        for argument in (
            SlowRepr(str(marker)),
            HangingRepr(str(marker)),
            HangingRepr(str(marker)),
            SlowRepr(str(marker)),
        ):
            started = time.perf_counter()
            queue.enqueue(hardening_jobs.accept, argument, description="slow")
            took.append(time.perf_counter() - started)
    finally:
        instrumentor.uninstrument()

    attributes = [a for a in captured.log_attributes() if a["clues.event_type"] == "enqueued"]
    assert json.loads(attributes[0][ARGS]) == ["Opaque(5)"] and json.loads(attributes[0][KWARGS]) == {"kw": "Opaque(6)"}
    assert [json.loads(a[ARGS])[0] for a in attributes[1:]] == [
        "<tests.hardening_jobs.SlowRepr>",
        "<tests.hardening_jobs.HangingRepr>",
        "<tests.hardening_jobs.HangingRepr>",
        "<tests.hardening_jobs.SlowRepr>",
    ]
    assert max(took) < 1.0, took  # the time limit is 0.2 s; each repr takes 2 s or an hour
    # Three abandoned reprs switch repr off: the fourth was not even started.
    deadline = time.monotonic() + 10  # an abandoned thread may note its call a little late on a loaded machine
    while len(marker.read_text().splitlines()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(marker.read_text().splitlines()) == [
        *["HangingRepr.__repr__ in pid " + str(os.getpid())] * 2,
        "SlowRepr.__repr__ in pid " + str(os.getpid()),
    ]
    assert errors.counts() == {f"{Place.ARGS_REPR.value}:CallTimedOut": 3}


def test_args_repr_is_off_by_default_and_set_by_kwarg_or_environment(monkeypatch):
    assert CluesConfig.from_kwargs().args_repr is False
    assert CluesConfig.from_kwargs().arguments.repr_caller is None
    assert CluesConfig.from_kwargs(args_repr=True).arguments.repr_caller is not None
    monkeypatch.setenv("OTEL_PYTHON_CLUES_ARGS_REPR", "true")
    assert CluesConfig.from_kwargs().args_repr is True
    assert CluesConfig.from_kwargs(args_repr=False).args_repr is False


# -- the benchmark ---------------------------------------------------------------------------------


def test_argument_size_benchmark_prints_a_row_per_shape():
    done = subprocess.run(
        [sys.executable, "benchmarks/argument_size.py", "--rounds", "1", "--scale", "0.05"],
        cwd=REPO_ROOT,
        env=env_with({}),
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.endswith("]") and "ms" in line]
    names = ["small args", "1,000-int list", "100,000-int list", "2,000-key dict of 100-item lists"]
    assert [row[:34].strip() for row in rows] == names, done.stdout
    for row in rows:  # plain, clues, added and the ratio are all there; no timing is asserted
        assert len(re.findall(r"-?\d+\.\d+ms", row)) == 3 and float(row.split()[-2]) > 0, row
