"""In-memory OpenTelemetry providers for unit tests (end-to-end tests use a real OTLP receiver)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry_instrumentation_clues import CluesInstrumentor


@dataclass
class Captured:
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    tracer_provider: TracerProvider
    logger_provider: LoggerProvider

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def log_attributes(self) -> list[dict]:
        return [dict(item.log_record.attributes or {}) for item in self.logs.get_finished_logs()]

    def event_types(self) -> list[str]:
        return [attrs["clues.event_type"] for attrs in self.log_attributes()]


@pytest.fixture
def captured() -> Captured:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    return Captured(spans, logs, tracer_provider, logger_provider)


@pytest.fixture
def instrumented(captured: Captured) -> Iterator[CluesInstrumentor]:
    instrumentor = CluesInstrumentor()
    instrumentor.instrument(tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider)
    try:
        yield instrumentor
    finally:
        instrumentor.uninstrument()
