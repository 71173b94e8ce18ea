"""The horses' flush budget: short while exports fail, probing its way back, loss kept visible."""

from __future__ import annotations

import logging

from opentelemetry_instrumentation_clues.runtime.flush import (
    DEGRADED_FLUSH_MILLIS,
    PROBE_EVERY_SECONDS,
    REPORT_EVERY_SECONDS,
    FlushBudget,
    holds_telemetry,
)
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_flush_shortens_the_budget_and_a_probe_restores_it():
    clock = Clock()
    budget = FlushBudget(2000, clock=clock)
    assert budget.for_next_horse() == 2000
    budget.update(flushed_in_time=False)
    assert budget.for_next_horse() == DEGRADED_FLUSH_MILLIS
    clock.now += PROBE_EVERY_SECONDS / 2
    assert budget.for_next_horse() == DEGRADED_FLUSH_MILLIS
    clock.now += PROBE_EVERY_SECONDS / 2
    assert budget.for_next_horse() == 2000  # the probe: one horse tries at full length
    assert budget.for_next_horse() == DEGRADED_FLUSH_MILLIS  # the others keep their pace meanwhile
    budget.update(flushed_in_time=True)  # the probe got through: a collector ≥ 50 ms away is fine
    assert not budget.degraded and budget.for_next_horse() == 2000


def test_a_failing_probe_keeps_the_short_budget_and_probes_again_later():
    clock = Clock()
    budget = FlushBudget(2000, clock=clock)
    budget.update(flushed_in_time=False)
    clock.now += PROBE_EVERY_SECONDS
    assert budget.for_next_horse() == 2000
    budget.update(flushed_in_time=False)
    assert budget.for_next_horse() == DEGRADED_FLUSH_MILLIS
    clock.now += PROBE_EVERY_SECONDS
    assert budget.for_next_horse() == 2000


def test_continuing_loss_is_counted_and_logged_once_a_minute(caplog):
    clock = Clock()
    budget = FlushBudget(2000, clock=clock)
    with caplog.at_level(logging.WARNING, logger="opentelemetry_instrumentation_clues"):
        budget.update(flushed_in_time=False)  # the first: an error, logged once, counted
        for _ in range(5):
            clock.now += 1
            budget.update(flushed_in_time=False)
        assert not [r for r in caplog.records if "timed out in the last" in r.getMessage()]
        clock.now += REPORT_EVERY_SECONDS
        budget.update(flushed_in_time=False)
    (report,) = [r.getMessage() for r in caplog.records if "timed out in the last" in r.getMessage()]
    assert report.startswith("clues: 6 work horse flushes timed out in the last 60 s")
    assert errors.counts() == {f"{Place.FLUSH.value}:FlushTimedOut": 1}


def test_a_provider_holds_telemetry_only_while_its_batch_queue_has_some():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    batched = TracerProvider()
    batched.add_span_processor(BatchSpanProcessor(InMemorySpanExporter(), schedule_delay_millis=600_000))
    simple = TracerProvider()
    simple.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    assert not holds_telemetry([lambda: batched, lambda: simple])
    batched.get_tracer("t").start_span("held").end()
    simple.get_tracer("t").start_span("sent at once").end()
    assert holds_telemetry([lambda: batched])
    assert not holds_telemetry([lambda: simple])
    batched.force_flush()
    assert not holds_telemetry([lambda: batched])


def test_an_unknown_processor_is_assumed_to_hold_telemetry():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanProcessor

    class Opaque(SpanProcessor):
        pass

    provider = TracerProvider()
    provider.add_span_processor(Opaque())
    assert holds_telemetry([lambda: provider])
