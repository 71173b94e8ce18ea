"""A process that exports over OTLP/gRPC through clues' relay, for tests/test_grpc_relay.py.

``python -m tests.grpc_relay_process ENDPOINT SCENARIO``; prints one JSON line of what it saw.
It runs in its own process because starting the relay forks: the test process's own gRPC
receiver would be inside gRPC at that instant.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from opentelemetry_instrumentation_clues.runtime import grpc_relay
from opentelemetry_instrumentation_clues.runtime.fork_safety import grpc_exports
from opentelemetry_instrumentation_clues.runtime.safety import errors

HORSES = 10


def main(endpoint: str, scenario: str) -> dict[str, Any]:
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=2)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    tracer = provider.get_tracer("relay-test")
    found = grpc_exports([lambda: provider])
    relay = grpc_relay.ensure_started(found.exporters, found.export_locks)
    assert relay is not None
    seen: dict[str, Any] = {
        "relay_pid": relay.pid,
        "stub": type(exporter._client).__name__,
        "worker_channel_closed": exporter._channel is None,  # so gRPC can shut down in the worker
    }

    if scenario == "spans":
        for number in range(50):
            tracer.start_span(f"worker {number}").end()
        seen["horse_exits"] = [_horse(tracer, provider, number) for number in range(HORSES)]
    elif scenario == "rpc-error":
        try:
            exporter._client.Export(ExportTraceServiceRequest(), metadata=(), timeout=1.0)
        except grpc_relay.RelayedRpcError as error:
            seen["code"] = error.code().name
    elif scenario == "relay-killed":
        os.kill(relay.pid, signal.SIGKILL)
        tracer.start_span("after the relay").end()
        seen["flushed"] = provider.force_flush(10_000)
        seen["errors"] = errors.counts()
        seen["stub_after"] = type(exporter._client).__name__
        seen["restarted"] = grpc_relay.ensure_started(found.exporters, found.export_locks) is not None
    seen["flushed"] = seen.get("flushed", provider.force_flush(10_000))
    return seen


def _horse(tracer: Any, provider: Any, number: int) -> int:
    """A forked child that exports its own span, as a horse whose job made spans does."""
    pid = os.fork()
    if pid == 0:
        tracer.start_span(f"horse {number}").end()
        os._exit(0 if provider.force_flush(5_000) else 3)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
    os._exit(0)  # the SDK's shutdown at exit is not what these scenarios look at
