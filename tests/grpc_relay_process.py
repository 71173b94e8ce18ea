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
import time
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from opentelemetry_instrumentation_clues.runtime import grpc_relay
from opentelemetry_instrumentation_clues.runtime.fork_safety import grpc_exports
from opentelemetry_instrumentation_clues.runtime.safety import errors

HORSES = 10
SHUTDOWN_ROUNDS = 300  # without the wait, about 2 in 100 such children hung


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
        # The first horse forks at once: the worker's channel has just closed and gRPC shut down.
        first = _horse(tracer, provider, 0)
        for number in range(50):
            tracer.start_span(f"worker {number}").end()
        seen["horse_exits"] = [first] + [_horse(tracer, provider, number) for number in range(1, HORSES)]
    elif scenario == "shutdown-window":
        seen["hung"] = _children_hung_after_the_last_channel_closed(endpoint, SHUTDOWN_ROUNDS)
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


def _horse(tracer: Any, provider: Any, number: int) -> int | str:
    """A forked child that exports its own span, as a horse whose job made spans does."""
    pid = os.fork()
    if pid == 0:
        tracer.start_span(f"horse {number}").end()
        os._exit(0 if provider.force_flush(5_000) else 3)
    return _exit_of(pid, 30)


def _children_hung_after_the_last_channel_closed(endpoint: str, rounds: int) -> int:
    """Each round: a channel, one RPC, the channel closed, the wait the relay makes after closing
    the worker's channels, then a fork whose child makes a channel of its own. How many hung."""
    hung = 0
    for _ in range(rounds):
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=2)
        exporter._client.Export(ExportTraceServiceRequest(), timeout=2)
        exporter._channel.close()
        exporter._channel = exporter._client = None  # the last channel: gRPC shuts down
        grpc_relay.await_grpc_shutdown(grpc_relay.SHUTDOWN_WAIT_SECONDS)
        pid = os.fork()
        if pid == 0:
            grpc.insecure_channel(endpoint).close()
            os._exit(0)
        hung += _exit_of(pid, 5) == "hung"
    return hung


def _exit_of(pid: int, seconds: float) -> int | str:
    """The child's exit code, or "hung" (and killed) if it has not exited in time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)  # a child's exit has no event to await here but its reaping
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return "hung"


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
    os._exit(0)  # the SDK's shutdown at exit is not what these scenarios look at
