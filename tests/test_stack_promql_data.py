"""Every dashboard PromQL query returns data from a real Prometheus.

Runs the `prometheus` binary (Debian package `prometheus`; skipped where it is missing),
scraping the clues instruments as the OpenTelemetry Prometheus exporter serves them. The
target is tests/synthetic_clues_metrics.py for now; point ``metrics_target`` at a real
instrumented worker once the package emits its metrics.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import stack_queries as sq

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not installed")

HERE = Path(__file__).resolve().parent
#: Sample template-variable values that match what the synthetic target emits.
VALUES = {
    **sq.SAMPLE_VALUES,
    "queue": "default",
    "worker_class": "app.jobs.send_email",
    "error_type": "ValueError",
    "sla_threshold": "1",
    # 1 s scrapes: a short rate window gets data within seconds.
    "__rate_interval": "5s",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def metrics_target() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "synthetic_clues_metrics.py"), str(port)])
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prometheus_url(metrics_target: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("prometheus")
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: rq-worker\n    static_configs:\n"
        f"      - targets: ['{metrics_target}']\n"
    )
    port = _free_port()
    log = (tmp / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                # Ready once a rate() over the scraped counter has two samples.
                q = urllib.parse.urlencode({"query": "rate(messaging_client_consumed_messages_total[5s])"})
                if _get(f"{url}/api/v1/query?{q}")["data"]["result"]:
                    break
            except (urllib.error.URLError, ConnectionError, KeyError):
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prometheus did not scrape the target in 60 s: " + (tmp / "prometheus.log").read_text())
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.mark.parametrize("query", sq.prom_queries(), ids=str)
def test_query_returns_data(query: sq.Query, prometheus_url: str) -> None:
    text, _labels = sq.promql_for_parsing(query.expr)
    text = sq.substitute(text, VALUES)
    result = _get(f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': text})}")
    assert result["status"] == "success", result
    assert result["data"]["result"], f"{query}: no data for {text}"
