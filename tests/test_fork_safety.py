"""A forked work horse gets its own exporter connections and a bounded final flush."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry_instrumentation_clues.runtime import fork_safety
from opentelemetry_instrumentation_clues.runtime.flush import flush_all
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from tests.processes import what_a_forked_child_reports


def _what_a_forked_child_sees(look: Callable[[Any, Any], str]) -> tuple[str, Any, Any]:
    """Fork a process watched by fork_safety; ``look(owner, parent_session)`` runs in the child.

    Returns its report, the exporter's session owner and the parent's session."""
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces", headers={"x-team": "jobs"})
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    fork_safety.watch([lambda: provider])
    try:
        (owner,) = fork_safety._exporters.current().session_owners
        parent_session = owner._session
        report = what_a_forked_child_reports(lambda: look(owner, parent_session))
    finally:
        fork_safety.watch([])
        provider.shutdown()
    return report, owner, parent_session


def test_forked_child_gets_a_fresh_http_session_with_the_same_headers():
    def look(owner: Any, parent_session: Any) -> str:
        session = owner._session
        same = session is parent_session
        settings_kept = session.headers == parent_session.headers and session.verify == parent_session.verify
        return f"{same}|{settings_kept}"

    report, owner, parent_session = _what_a_forked_child_sees(look)
    assert report == "False|True"
    assert owner._session is parent_session  # the parent keeps its own


def test_a_child_makes_its_fresh_session_only_when_it_first_uses_it():
    """Most horses never export (clues' telemetry goes to the worker): making a requests
    session in every one would cost about a millisecond per job for nothing."""

    def look(owner: Any, parent_session: Any) -> str:
        before = type(owner._session).__name__
        verify = owner._session.verify  # the first use
        after = type(owner._session) is type(parent_session) and owner._session is not parent_session
        return f"{before}|{verify}|{after}"

    report, _, parent_session = _what_a_forked_child_sees(look)
    assert report == f"_FreshSessionOnFirstUse|{parent_session.verify}|True"


def test_exporters_are_found_again_when_a_processor_is_added():
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    fork_safety.watch([lambda: provider])
    try:
        assert len(fork_safety._batch_processors()) == 1
        assert len(fork_safety._batch_processors()) == 1  # cached: the same answer
        provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
        assert len(fork_safety._batch_processors()) == 2
    finally:
        fork_safety.watch([])
        provider.shutdown()


def test_a_child_never_frees_the_telemetry_its_parent_has_not_exported_yet():
    """The SDK clears batch queues in a forked child; clues hands it an empty one, so the
    parent's queued spans are neither freed in the child (copy-on-write) nor lost in the parent."""
    provider = TracerProvider()
    processor = BatchSpanProcessor(InMemorySpanExporter(), schedule_delay_millis=600_000)
    provider.add_span_processor(processor)
    for i in range(20):
        provider.get_tracer("t").start_span(f"queued {i}").end()
    queue = processor._batch_processor._queue

    def look() -> str:  # in the child: what it was handed, and whether the parent's queue is intact
        (kept,) = [q for _, q, _ in fork_safety._inherited]
        return f"{len(processor._batch_processor._queue)}|{kept is queue}|{len(kept)}"

    fork_safety.watch([lambda: provider])
    try:
        report = what_a_forked_child_reports(look)
        assert processor._batch_processor._queue is queue  # the parent has its own queue back
        provider.get_tracer("t").start_span("after the fork").end()
        provider.force_flush()
        exported = [span.name for span in processor._batch_processor._exporter.get_finished_spans()]
    finally:
        fork_safety.watch([])
        provider.shutdown()
    assert report == "0|True|20"
    assert exported == [f"queued {i}" for i in range(20)] + ["after the fork"]


class _StuckExporter(SpanExporter):
    def __init__(self) -> None:
        self.release = threading.Event()

    def export(self, spans):
        self.release.wait()
        return SpanExportResult.SUCCESS


def test_flush_gives_up_after_its_timeout_when_the_export_hangs():
    exporter = _StuckExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    provider.get_tracer("t").start_span("s").end()
    started = time.monotonic()
    try:
        flush_all([lambda: provider], timeout_millis=300)
        elapsed = time.monotonic() - started
    finally:
        exporter.release.set()
        provider.shutdown()
    assert elapsed < 5
    assert errors.counts() == {f"{Place.FLUSH.value}:FlushTimedOut": 1}


@pytest.mark.timeout(0)  # pytest-timeout's own SIGALRM timer would make clues fall back to a thread
def test_a_horse_flush_is_cut_by_an_alarm_without_a_thread():
    exporter = _StuckExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60_000))
    provider.get_tracer("t").start_span("s").end()
    threads_before = threading.active_count()
    started = time.monotonic()
    try:
        flushed = flush_all([lambda: provider], timeout_millis=300, in_horse=True)
        elapsed = time.monotonic() - started
        threads_after = threading.active_count()
    finally:
        exporter.release.set()
        provider.shutdown()
    assert flushed is False and elapsed < 5
    assert threads_after == threads_before  # nothing left running: the main thread was interrupted
    assert errors.counts() == {f"{Place.FLUSH.value}:FlushTimedOut": 1}
    # The export it cut had attached the SDK's suppress-instrumentation flag; it stays in the flush.
    assert is_instrumentation_enabled()


def _import_in_a_thread(tmp_path, monkeypatch, seconds: float) -> tuple[str, threading.Thread]:
    """Start importing a slow module in another thread; return once that thread holds its import lock."""
    name = f"clues_slow_import_{time.monotonic_ns()}"
    read_end, write_end = os.pipe()
    # The module's body tells the test it has begun (a byte on the pipe), then takes a while.
    body = f"import os, time\nos.write({write_end}, b'x')\ntime.sleep({seconds})\nVALUE = 42\n"
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    importer = threading.Thread(target=importlib.import_module, args=(name,), daemon=True)
    importer.start()
    os.read(read_end, 1)  # the module's body is running: its lock is held
    os.close(read_end)
    os.close(write_end)
    return name, importer


def test_a_fork_waits_for_an_import_another_thread_is_running(tmp_path, monkeypatch):
    # The failure this guards against: the worker's export thread is importing (requests'
    # lazy `import netrc`) when rq forks; the module stays locked in the horse for good.
    name, importer = _import_in_a_thread(tmp_path, monkeypatch, seconds=0.5)
    fork_safety.watch([lambda: None])
    try:
        report_read, report_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: import the module, bounded by an alarm whose default action kills us
            try:
                signal.alarm(10)
                os.write(report_write, str(importlib.import_module(name).VALUE).encode())
            finally:
                os._exit(0)
        os.close(report_write)
        _, status = os.waitpid(pid, 0)
        report = os.read(report_read, 100).decode()
        os.close(report_read)
    finally:
        fork_safety.watch([])
        importer.join()
    assert os.WIFEXITED(status), f"the child hung on the import its parent's thread had begun (status {status})"
    assert report == "42"
    assert errors.counts() == {}


def test_the_wait_for_imports_is_bounded(tmp_path, monkeypatch):
    _, importer = _import_in_a_thread(tmp_path, monkeypatch, seconds=1.0)
    try:
        assert fork_safety.let_other_threads_finish_imports(timeout_seconds=0.05) is False
    finally:
        importer.join()
    assert fork_safety.let_other_threads_finish_imports(timeout_seconds=0.05) is True
