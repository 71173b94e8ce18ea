"""clues' gRPC relay (runtime/grpc_relay.py) with a real OTLP/gRPC receiver on loopback.

The exporting process runs apart from the test (tests/grpc_relay_process.py): starting the
relay forks it. The whole worker, under collector trouble, is in test_grpc_collector_trouble.py.
"""

from __future__ import annotations

import json
import sys
import threading

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from opentelemetry_instrumentation_clues.runtime import grpc_relay
from tests.grpc_relay_process import HORSES
from tests.otlp_receiver import free_port, hung_collector, otlp_receiver
from tests.processes import env_with, run


def relayed(endpoint: str, scenario: str) -> dict:
    env = env_with({"OTEL_TRACES_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"})
    env.pop("GRPC_ENABLE_FORK_SUPPORT", None)
    result = run([sys.executable, "-m", "tests.grpc_relay_process", endpoint, scenario], env, timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_workers_spans_go_through_the_relay_and_a_horses_own_go_direct():
    with otlp_receiver("grpc") as receiver:
        seen = relayed(f"127.0.0.1:{receiver.port}", "spans")
        names = {span.name for span in receiver.wait_for(lambda r: len(r.spans) >= 50 + HORSES).spans}
    assert seen["stub"] == "_RelayedStub"
    assert seen["worker_channel_closed"] is True
    assert seen["flushed"] is True
    assert seen["horse_exits"] == [0] * HORSES  # each horse flushed its span through a channel of its own
    assert names == {f"worker {n}" for n in range(50)} | {f"horse {n}" for n in range(HORSES)}


def test_a_child_forked_after_the_last_channel_closed_can_make_its_own():
    """gRPC shuts down on threads of its own a few ms after the last channel closes; a fork in that
    window once left a horse hung in its first channel. The relay start waits for them."""
    with otlp_receiver("grpc") as receiver:
        seen = relayed(f"127.0.0.1:{receiver.port}", "shutdown-window")
    assert seen["hung"] == 0


def test_an_rpc_error_comes_back_with_its_code():
    port = free_port()
    with hung_collector(port):
        assert relayed(f"127.0.0.1:{port}", "rpc-error")["code"] == "DEADLINE_EXCEEDED"
    assert relayed(f"127.0.0.1:{free_port()}", "rpc-error")["code"] == "UNAVAILABLE"  # nothing listens


def test_a_killed_relay_is_counted_its_exporters_go_direct_and_a_new_one_starts():
    with otlp_receiver("grpc") as receiver:
        seen = relayed(f"127.0.0.1:{receiver.port}", "relay-killed")
        receiver.wait_for(lambda r: any(span.name == "after the relay" for span in r.spans))
    assert seen["flushed"] is True  # the SDK retried the batch on its own channel
    assert seen["stub_after"] != "_RelayedStub"
    assert any(key.startswith("grpc.relay:") for key in seen["errors"]), seen["errors"]
    assert seen["restarted"] is True


def test_no_relay_starts_while_an_export_is_in_flight():
    exporting = threading.Lock()
    held = threading.Event()
    done = threading.Event()

    def export_in_flight() -> None:
        with exporting:
            held.set()
            done.wait(10)

    thread = threading.Thread(target=export_in_flight)
    thread.start()
    held.wait(10)
    try:
        assert grpc_relay.ensure_started([object()], [exporting]) is None  # forking now is the hazard itself
        assert grpc_relay.active() is None
    finally:
        done.set()
        thread.join()


def test_the_method_path_is_read_from_the_requests_proto_file():
    trace_export = grpc_relay.method_path(ExportTraceServiceRequest)
    assert trace_export == "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    logs_export = grpc_relay.method_path(ExportLogsServiceRequest)
    assert logs_export == "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
