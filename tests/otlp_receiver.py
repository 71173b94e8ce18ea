"""A real OTLP receiver on loopback (the ``oteltest`` package's HTTP and gRPC sinks).

It decodes what arrives into plain spans and log records and lets a test await a
condition on them instead of sleeping.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from oteltest.sink import GrpcSink, HttpSink
from oteltest.sink.handler import RequestHandler


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, kind) if kind else None


def _attrs(key_values: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in key_values}


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    status_code: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]
    links: list[str]
    resource: dict[str, Any]


@dataclass
class LogRecord:
    event_name: str
    trace_id: str
    span_id: str
    time_unix_nano: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class Received:
    spans: list[Span] = field(default_factory=list)
    logs: list[LogRecord] = field(default_factory=list)
    metric_requests: list[Any] = field(default_factory=list)
    trace_requests: int = 0  # export requests, each counted once whatever it held
    log_requests: int = 0


class _Collector(RequestHandler):
    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.received = Received()
        self.changed = threading.Condition()
        self.delay_seconds = delay_seconds  # a collector that far away answers that late

    def handle_trace(self, request: Any, headers: Any) -> None:
        time.sleep(self.delay_seconds)
        spans = [
            Span(
                name=s.name,
                trace_id=s.trace_id.hex(),
                span_id=s.span_id.hex(),
                parent_span_id=s.parent_span_id.hex(),
                kind=s.kind,
                status_code=s.status.code,
                attributes=_attrs(s.attributes),
                events=[(e.name, e.time_unix_nano, _attrs(e.attributes)) for e in s.events],
                links=[link.trace_id.hex() for link in s.links],
                resource=_attrs(rs.resource.attributes),
            )
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]
        with self.changed:
            self.received.spans.extend(spans)
            self.received.trace_requests += 1
            self.changed.notify_all()

    def handle_logs(self, request: Any, headers: Any) -> None:
        time.sleep(self.delay_seconds)
        records = [
            LogRecord(
                event_name=r.event_name,
                trace_id=r.trace_id.hex(),
                span_id=r.span_id.hex(),
                time_unix_nano=r.time_unix_nano,
                attributes=_attrs(r.attributes),
                resource=_attrs(rl.resource.attributes),
            )
            for rl in request.resource_logs
            for sl in rl.scope_logs
            for r in sl.log_records
        ]
        with self.changed:
            self.received.logs.extend(records)
            self.received.log_requests += 1
            self.changed.notify_all()

    def handle_metrics(self, request: Any, headers: Any) -> None:
        with self.changed:
            self.received.metric_requests.append(request)
            self.changed.notify_all()


class OtlpReceiver:
    def __init__(self, protocol: str, port: int, delay_seconds: float = 0.0) -> None:
        self.protocol = protocol
        self.port = port
        self._collector = _Collector(delay_seconds)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def received(self) -> Received:
        return self._collector.received

    def otel_env(self, service_name: str) -> dict[str, str]:
        """Environment for a process that exports everything here, as users configure it."""
        return {
            "OTEL_SERVICE_NAME": service_name,
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc" if self.protocol == "grpc" else "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "none",
        }

    def wait_for(self, condition: Callable[[Received], bool], timeout: float = 60.0) -> Received:
        """Block until ``condition(received)`` holds; fail with what did arrive."""
        deadline = time.monotonic() + timeout
        with self._collector.changed:
            while not condition(self.received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"OTLP receiver: condition not met in {timeout}s; got {len(self.received.spans)} spans, "
                        f"{len(self.received.logs)} log records"
                    )
                self._collector.changed.wait(remaining)
        return self.received


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def otlp_receiver(
    protocol: str = "http", port: int | None = None, delay_seconds: float = 0.0
) -> Iterator[OtlpReceiver]:
    """A real OTLP receiver on loopback (``port``: a given one; ``delay_seconds``: answer that late)."""
    receiver = OtlpReceiver(protocol, port or free_port(), delay_seconds)
    logger = logging.getLogger("tests.otlp_receiver")
    if protocol == "grpc":
        sink: Any = GrpcSink(receiver._collector, logger, port=receiver.port)
    else:
        sink = HttpSink(receiver._collector, logger, port=receiver.port)
    sink.start()
    try:
        yield receiver
    finally:
        sink.stop()


@contextmanager
def hung_collector(port: int) -> Iterator[None]:
    """A collector that accepts connections and never answers (a stuck proxy, a frozen process)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept_and_hold() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:  # closed: the collector is gone
                return

    thread = threading.Thread(target=accept_and_hold, daemon=True)
    thread.start()
    try:
        yield
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)
        for connection in held:
            connection.close()
