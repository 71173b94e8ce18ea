"""Turn the seed-style settings into a working legacy output.

``instrument(event_publisher=…, event_marshaller=…, item_preprocessor=…)`` or,
under ``opentelemetry-instrument``, environment variables alone:

* ``OTEL_PYTHON_CLUES_PUBLISHER``: comma-separated publishers — ``stdout``,
  ``file:///var/log/rq-clues.log`` (or a plain absolute path), ``tcp://host:port``,
  ``udp://host:port``; several make a CompositePublisher.
* ``OTEL_PYTHON_CLUES_EVENT_MARSHALLER`` and ``OTEL_PYTHON_CLUES_ITEM_PREPROCESSOR``:
  ``package.module:callable``.

The legacy exporter is added to the SDK LoggerProvider clues logs to (the one
passed in, else the global one). When no SDK is configured at all, clues makes
a private LoggerProvider for it, so the one-liner works with no other set-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry._logs import LoggerProvider as ApiLoggerProvider
from opentelemetry._logs import get_logger_provider
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

from opentelemetry_instrumentation_clues.config import CluesConfig, ConfigurationError
from opentelemetry_instrumentation_clues.legacy.exporter import LegacyJsonLineExporter
from opentelemetry_instrumentation_clues.legacy.marshaller import json_marshaller
from opentelemetry_instrumentation_clues.legacy.publishers import (
    CompositePublisher,
    EventPublisher,
    LogPublisher,
    StandardOutPublisher,
    TcpPublisher,
    UdpPublisher,
)
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.runtime.threads import run_with_timeout

DETACH_TIMEOUT_SECONDS = 5.0


def publisher_from_spec(spec: str) -> EventPublisher:
    """``stdout``, ``file:///path``, ``/path``, ``tcp://h:p``, ``udp://h:p``, comma-separated."""
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    if not parts:
        raise ConfigurationError("clues publisher spec is empty")
    publishers = [_one_publisher(part) for part in parts]
    return publishers[0] if len(publishers) == 1 else CompositePublisher(*publishers)


def _one_publisher(spec: str) -> EventPublisher:
    if spec in ("stdout", "-"):
        return StandardOutPublisher()
    if spec.startswith("/"):
        return LogPublisher(spec)
    url = urlsplit(spec)
    if url.scheme == "file" and url.path:
        return LogPublisher(url.path)
    if url.scheme in ("tcp", "udp") and url.hostname and url.port:
        return (TcpPublisher if url.scheme == "tcp" else UdpPublisher)(url.hostname, url.port)
    raise ConfigurationError(
        f"unknown clues publisher {spec!r}: use stdout, file:///path/to/file, tcp://host:port or udp://host:port"
    )


class _DetachableProcessor(LogRecordProcessor):
    """Lets uninstrument() take the legacy output off a provider that has no remove API."""

    def __init__(self, inner: LogRecordProcessor) -> None:
        self.inner = inner
        self.attached = True

    def on_emit(self, log_record: Any) -> None:
        if self.attached:
            self.inner.on_emit(log_record)

    # Older SDKs call emit() instead of on_emit().
    emit = on_emit

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.inner.force_flush(timeout_millis) if self.attached else True

    def detach(self) -> None:
        """Stop taking records and flush what is buffered, waiting a few seconds at most."""
        self.attached = False
        if not run_with_timeout(self.inner.shutdown, DETACH_TIMEOUT_SECONDS):
            errors.record(
                Place.LEGACY_CLOSE, TimeoutError("publisher did not drain in time"), "detaching the legacy output"
            )


@dataclass
class LegacyOutput:
    processor: _DetachableProcessor
    private_provider: LoggerProvider | None

    def detach(self) -> None:
        self.processor.detach()


def attach_legacy_output(
    config: CluesConfig, logger_provider: ApiLoggerProvider | None
) -> tuple[LegacyOutput, ApiLoggerProvider]:
    """Add the legacy exporter for ``config.event_publisher`` (else the publisher its spec names);
    return it and the provider clues must log to. A bad spec raises ConfigurationError naming it."""
    publisher = config.event_publisher
    if publisher is None:
        assert config.publisher_spec
        publisher = publisher_from_spec(config.publisher_spec)
    exporter = LegacyJsonLineExporter(publisher, config.event_marshaller or json_marshaller)
    processor = _DetachableProcessor(BatchLogRecordProcessor(exporter))
    target = logger_provider if logger_provider is not None else get_logger_provider()
    if callable(getattr(target, "add_log_record_processor", None)):
        target.add_log_record_processor(processor)  # type: ignore[attr-defined]
        return LegacyOutput(processor, None), target
    private = LoggerProvider()
    private.add_log_record_processor(processor)
    return LegacyOutput(processor, private), private
