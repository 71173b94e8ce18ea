"""The dashboards against a REAL instrumented run (no Docker engine needed).

One run per module: ``opentelemetry-instrument rq worker --with-scheduler default slow`` (the
compose ``worker`` command) fed by ``tests.stack_feed`` (successes, failures, Retry(max=2)
jobs, scheduled jobs, jobs that wait in the queue), watched by ``clues monitor`` (the compose
``monitor`` command). All three export metrics by OTLP to a real receiver *and* serve them with
the Python Prometheus exporter; worker and producer send logs by OTLP.

* Every dashboard PromQL query returns data (a finite value) from Debian's ``prometheus``
  scraping the two processes, in two shapes: as scraped, and reshaped to what Prometheus 3's
  OTLP receiver stores (``le="1"`` instead of ``"1.0"``, no ``otel_scope_*`` labels).
* The metric and label names the dashboards use are names that run exposes, and the Prometheus 3
  OTLP translation of the OTLP data gives exactly the scraped series and labels.
* The Loki names the dashboards use are the real log records' attributes after Loki 3's OTLP
  translation, and every event type the explorer offers really occurs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import stack_queries as sq
from tests import stack_run as sr
from tests.otlp_receiver import OtlpReceiver, free_port, otlp_receiver
from tests.processes import REPO_ROOT, env_with, instrumented, tool

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus binary not installed")

WORKER_SERVICE, PRODUCER_SERVICE, MONITOR_SERVICE = "rq-worker", "rq-demo-producer", "rq-monitor"
ALERT_RULES = sorted((REPO_ROOT / "deploy" / "prometheus" / "rules").glob("*.rules.yml"))
TIME_IN_QUEUE = "rq_job_time_in_queue_seconds"
SLA_SECONDS = 1.0  # the dashboards' default SLA threshold
RUN_TIMEOUT = 180
FEED_SECONDS = 1800  # the producer stops by itself after this, even if a test run is killed

#: Template-variable values: one job class / queue / exception the run really produces, and All.
VALUE_SETS = {
    "selected": {"queue": "default", "worker_class": "tests.jobs.fail", "error_type": "ValueError"},
    "all": {"queue": ".*", "worker_class": ".*", "error_type": ".*"},
}
# 1 s scrapes and a round of jobs every few seconds (tests/stack_feed.py): a 15 s window always
# holds several samples and several rounds.
RATE_WINDOW = 15
COMMON_VALUES = {**sq.SAMPLE_VALUES, "sla_threshold": "1", "__rate_interval": f"{RATE_WINDOW}s", "__range": "1h"}
QUERY_TIMEOUT = 20


# ============================================================================ the real run


@dataclass
class Run:
    receiver: OtlpReceiver
    worker_port: int
    producer_port: int
    monitor_port: int
    worker: subprocess.Popen[str]
    producer: subprocess.Popen[str]
    monitor: subprocess.Popen[str]

    def scrapes(self) -> tuple[sr.Scrape, sr.Scrape]:
        return sr.scrape(self.worker_port), sr.scrape(self.producer_port)

    def monitor_scrape(self) -> sr.Scrape:
        return sr.scrape(self.monitor_port)

    def alive(self) -> None:
        for name, proc in (("worker", self.worker), ("producer", self.producer), ("monitor", self.monitor)):
            assert proc.poll() is None, f"{name} exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"


def _env(receiver: OtlpReceiver, service: str, port: int) -> dict[str, str]:
    return env_with(
        {
            **receiver.otel_env(service),
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp,prometheus",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
            "OTEL_BLRP_SCHEDULE_DELAY": "200",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        }
    )


def _await(what: str, condition: Callable[[], bool], run: Run, timeout: float = RUN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.alive()
        try:
            if condition():
                return
        except OSError:  # exporter not listening yet
            pass
        time.sleep(0.3)
    pytest.fail(f"not seen within {timeout}s: {what}")


def _offered_event_types() -> set[str]:
    dash = sq.load_dashboards()["job-explorer.json"]
    return {o["value"] for o in next(v for v in dash["templating"]["list"] if v["name"] == "event_type")["options"]}


def _run_complete(run: Run) -> bool:
    worker, producer = run.scrapes()
    outcomes = worker.sum_by("messaging_client_consumed_messages_total", "clues_outcome")
    waited = worker.sum_by(f"{TIME_IN_QUEUE}_count", "messaging_destination_name")
    within = worker.bucket(f"{TIME_IN_QUEUE}_bucket", SLA_SECONDS)
    operations = producer.sum_by("messaging_client_sent_messages_total", "messaging_operation_name")
    events = {r.attributes.get("clues.event_type") for r in run.receiver.received.logs}
    monitor = run.monitor_scrape()
    return (
        all(outcomes.get(o, 0) >= 2 for o in ("success", "failure", "retried"))
        and set(waited) >= {"default", "slow"}
        and 0 < within < sum(waited.values())  # queue waits on both sides of the SLA bucket
        and set(operations) == {"send"}  # scheduled jobs count when the scheduler sends them, not when created
        and _offered_event_types() <= events
        and any(r.attributes.get("rq.job.will_retry") for r in run.receiver.received.logs)
        and len(run.receiver.received.metric_requests) >= 2
        and set(monitor.sum_by("rq_queue_jobs", "messaging_destination_name")) >= {"default", "slow"}
        and monitor.sum_by("rq_workers", "rq_worker_state", messaging_destination_name="default").get("idle", 0)
        + monitor.sum_by("rq_workers", "rq_worker_state", messaging_destination_name="default").get("busy", 0)
        == 1
    )


@pytest.fixture(scope="module")
def run(module_redis_url: str) -> Iterator[Run]:
    worker_port, producer_port, monitor_port = free_port(), free_port(), free_port()
    with otlp_receiver() as receiver:
        worker = subprocess.Popen(
            instrumented(tool("rq"), "worker", "--with-scheduler", "-u", module_redis_url, "default", "slow"),
            env=_env(receiver, WORKER_SERVICE, worker_port),
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        producer = subprocess.Popen(
            instrumented(sys.executable, "-m", "tests.stack_feed", module_redis_url, str(FEED_SECONDS)),
            env=_env(receiver, PRODUCER_SERVICE, producer_port),
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        monitor = subprocess.Popen(
            [tool("clues"), "monitor", "--redis-url", module_redis_url],
            env=_env(receiver, MONITOR_SERVICE, monitor_port),
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        current = Run(receiver, worker_port, producer_port, monitor_port, worker, producer, monitor)
        try:
            _await(
                "every outcome, both sides of the SLA bucket, every event type", lambda: _run_complete(current), current
            )
            yield current
        finally:
            for proc in (producer, worker, monitor):
                proc.terminate()
            for proc in (producer, worker, monitor):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


# ============================================================================ Prometheus

#: "otlp": reshape the scrape to what Prometheus 3's OTLP receiver stores for the same data.
OTLP_SHAPE_RELABEL = """\
    metric_relabel_configs:
      - source_labels: [le]
        regex: '(.+)\\.0'
        target_label: le
        replacement: '$1'
      - regex: 'otel_scope_.*'
        action: labeldrop
"""


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.load(resp)


def _query(base: str, promql: str) -> list[dict[str, Any]]:
    result = _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert result["status"] == "success", result
    return result["data"]["result"]


@pytest.fixture(scope="module", params=["scrape", "otlp"])
def prometheus(request: pytest.FixtureRequest, run: Run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    shape = request.param
    tmp = tmp_path_factory.mktemp(f"prometheus-{shape}")
    relabel = OTLP_SHAPE_RELABEL if shape == "otlp" else ""
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
        + "".join(
            f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n{relabel}"
            for job, port in (
                (WORKER_SERVICE, run.worker_port),
                (PRODUCER_SERVICE, run.producer_port),
                (MONITOR_SERVICE, run.monitor_port),
            )
        )
    )
    port = free_port()
    log_path = tmp / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            # Ready once both targets have been scraped for a whole rate window.
            ready = f"min(count_over_time(up[{RATE_WINDOW}s])) >= {RATE_WINDOW - 1} and on() count(up == 1) == 3"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                run.alive()
                try:
                    if _query(url, ready):
                        break
                except (urllib.error.URLError, ConnectionError):
                    pass
                time.sleep(0.5)
            else:
                pytest.fail("prometheus did not scrape the run in 60 s:\n" + log_path.read_text())
            yield url
        finally:
            proc.terminate()
            proc.wait(20)


def _finite(sample: dict[str, Any]) -> bool:
    return math.isfinite(float(sample["value"][1]))


@pytest.mark.parametrize("values", list(VALUE_SETS), ids=lambda v: f"values={v}")
@pytest.mark.parametrize("query", sq.prom_queries(), ids=str)
def test_query_returns_data(query: sq.Query, values: str, prometheus: str) -> None:
    text, labels = sq.promql_for_parsing(query.expr, {**COMMON_VALUES, **VALUE_SETS[values]})

    def has_data(result: list[dict[str, Any]]) -> bool:
        if labels:  # a label_values() variable: its label must be on the series
            return all(any(label in s["metric"] for s in result) for label in labels)
        return any(_finite(s) for s in result)

    # The run is live: await data (normally there at the first query) rather than sleep.
    deadline = time.monotonic() + QUERY_TIMEOUT
    while not has_data(result := _query(prometheus, text)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert result, f"{query}: no data for {text}"
    assert has_data(result), f"{query}: no finite value / label {labels} for {text}: {result}"


def test_sla_share_is_between_zero_and_one(prometheus: str) -> None:
    """The SLA ratio is real: some jobs waited longer than the threshold, some less."""
    sla = next(q for q in sq.prom_queries() if q.where.startswith("SLA: waited"))
    text, _ = sq.promql_for_parsing(sla.expr, {**COMMON_VALUES, **VALUE_SETS["all"]})
    [sample] = _query(prometheus, text)
    assert 0 < float(sample["value"][1]) < 1


# ============================================================================ metric names


def _dashboard_label_names() -> set[str]:
    return sq.promql_names()[1]


def test_dashboard_metric_and_label_names_are_exposed_by_the_real_run(run: Run) -> None:
    worker, producer = run.scrapes()
    monitor = run.monitor_scrape()
    series = worker.series_names() | producer.series_names() | monitor.series_names()
    labels = worker.label_names() | producer.label_names() | monitor.label_names()
    usable = {label for label in labels if not sr.SCRAPE_ONLY_LABEL_RE.fullmatch(label)} | sr.PROMETHEUS_TARGET_LABELS
    metrics, used_labels = sq.promql_names()
    assert metrics <= series, f"dashboards use metrics the run does not expose: {metrics - series}"
    assert used_labels <= usable, f"dashboards use labels the run does not expose: {used_labels - usable}"
    # ...and the dashboards cover every clues instrument the run exposes.
    clues = {
        name
        for page in (worker, monitor)
        for (name, labs) in page.samples
        if ("otel_scope_name", sr.CLUES_SCOPE) in labs
    }
    base = re.compile(r"_(bucket|sum|count|total)$")
    assert {base.sub("", m) for m in metrics} == {base.sub("", m) for m in clues}


def test_prometheus3_otlp_translation_gives_the_scraped_names(run: Run) -> None:
    """The stack's path (OTLP -> Prometheus 3 receiver) and the test's path (Python exporter
    scrape) name every clues series and label alike."""
    otlp = sr.otlp_clues_metrics(run.receiver.received.metric_requests)
    assert set(otlp) == {
        "messaging.client.sent.messages",
        "messaging.client.consumed.messages",
        "messaging.process.duration",
        "rq.job.time_in_queue",
        "rq.queue.jobs",
        "rq.queue.oldest_job.age",
        "rq.workers",
    }
    translated = {s for m in otlp.values() for s in sr.prometheus3_series(m)}
    scraped = set()
    for page in (*run.scrapes(), run.monitor_scrape()):
        for name, labels in page.samples:
            if ("otel_scope_name", sr.CLUES_SCOPE) in labels:
                keys = frozenset(k for k, _ in labels if not sr.SCRAPE_ONLY_LABEL_RE.fullmatch(k))
                scraped.add((name, keys))
    assert translated == scraped


def test_bucket_boundaries_and_sla_thresholds(run: Run) -> None:
    """SLA thresholds are real bucket boundaries, and the `le` matcher the SLA panels use
    matches the boundary both as scraped ("1.0") and as the OTLP receiver writes it ("1")."""
    worker, _ = run.scrapes()
    scraped_le = {dict(labels)["le"] for (name, labels) in worker.samples if name == f"{TIME_IN_QUEUE}_bucket"}
    otlp_bounds = sr.otlp_clues_metrics(run.receiver.received.metric_requests)["rq.job.time_in_queue"].bounds
    assert {float(le) for le in scraped_le} == {*otlp_bounds, math.inf}
    dash = sq.load_dashboards()["jobs-overview.json"]
    sla_var = next(v for v in dash["templating"]["list"] if v["name"] == "sla_threshold")
    # PromQL string literals: `\\.` in the query is the regex `\.`.
    matchers = {
        m.replace("\\\\", "\\") for q in sq.prom_queries() for m in re.findall(r'le=~"((?:[^"\\]|\\.)*)"', q.expr)
    }
    assert matchers, "the SLA panels select one bucket with an le=~ matcher"
    for option in sla_var["options"]:
        value = float(option["value"])
        assert value in otlp_bounds, f"SLA threshold {value} is not a bucket boundary"
        scraped_form = next(le for le in scraped_le if le != "+Inf" and float(le) == value)
        for matcher in matchers:
            regex = sq.substitute(matcher, {"sla_threshold": option["value"]})
            assert re.fullmatch(regex, scraped_form), (regex, scraped_form)
            assert re.fullmatch(regex, sr.go_format_float(value)), (regex, sr.go_format_float(value))


# ============================================================================ Loki names


def _clues_logs(run: Run) -> list[Any]:
    return [r for r in run.receiver.received.logs if r.event_name.startswith("rq.job.")]


def _loki_names(run: Run) -> tuple[set[str], set[str]]:
    """(stream labels, structured metadata) Loki 3 makes of the run's real clues log records."""
    records = _clues_logs(run)
    assert records
    keys = {k for r in records for k in r.attributes}
    streams = {"service_name"} if all(r.resource.get("service.name") for r in records) else set()
    assert all(r.trace_id.strip("0") for r in records), "every clues log record is in a trace"
    return streams, sr.loki_structured_metadata(keys)


def test_logql_names_are_real_log_attributes(run: Run) -> None:
    streams, metadata = _loki_names(run)
    assert streams == sq.LOKI_STREAM_LABELS
    services = {r.resource["service.name"] for r in _clues_logs(run)}
    assert services == {WORKER_SERVICE, PRODUCER_SERVICE}
    for query in sq.loki_queries():
        if query.where.startswith("variable "):
            names = sq.logql_variable_names_of(query.expr)
        else:
            names = sq.logql_names_of(query.expr)
        assert names <= streams | metadata, f"{query}: not on the real records: {names - streams - metadata}"


def test_table_fields_are_real_log_attributes(run: Run) -> None:
    streams, metadata = _loki_names(run)
    for dash in sq.load_dashboards().values():
        for panel in sq.iter_panels(dash):
            if panel.get("datasource", {}).get("type") != "loki":
                continue
            for tr in panel.get("transformations", []):
                if tr["id"] == "organize":
                    fields = set(tr["options"].get("includeByName", {})) - {"Time"}
                    assert fields <= streams | metadata, fields - streams - metadata


def test_event_type_options_are_the_real_event_types(run: Run) -> None:
    seen = {r.attributes["clues.event_type"] for r in _clues_logs(run)}
    assert _offered_event_types() == seen
    assert {r.event_name for r in _clues_logs(run)} == {f"rq.job.{e}" for e in seen}


def test_failed_records_carry_what_the_failures_dashboard_shows(run: Run) -> None:
    failed = [r.attributes for r in _clues_logs(run) if r.attributes.get("clues.event_type") == "failed"]
    assert failed
    for attributes in failed:
        assert {"exception.type", "exception.message", "exception.stacktrace", "rq.job.will_retry"} <= set(attributes)
    assert {a["rq.job.will_retry"] for a in failed} == {True, False}


def test_docs_list_the_real_names(run: Run) -> None:
    """docs/viewing-stack.md names what a user will really find in Prometheus and Loki."""
    docs = (Path(sq.REPO_ROOT) / "docs" / "viewing-stack.md").read_text()
    metrics, labels = sq.promql_names()
    _, metadata = _loki_names(run)
    used_loki = sq.logql_names() - sq.LOKI_STREAM_LABELS
    for name in {re.sub(r"_(bucket|sum|count)$", "", m) for m in metrics} | labels | (used_loki & metadata):
        if name != "le":
            assert name in docs, f"docs/viewing-stack.md does not mention {name}"


def test_otlp_counters_never_go_backwards(run: Run) -> None:
    """Prometheus' OTLP receiver keeps one series per (resource, metric, attributes): a second
    process exporting the same resource (a forked child such as rq's scheduler) would make
    cumulative values jump back and forth, and rate() would read them as counter resets."""
    last: dict[tuple[Any, ...], tuple[int, float]] = {}
    backwards = []
    for request in run.receiver.received.metric_requests:
        for rm in request.resource_metrics:
            resource = tuple(sorted((kv.key, str(kv.value)) for kv in rm.resource.attributes))
            for sm in rm.scope_metrics:
                if sm.scope.name != sr.CLUES_SCOPE:
                    continue
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind == "gauge":  # the monitor's gauges go up and down by nature
                        continue
                    for p in getattr(m, kind).data_points:
                        value = p.count if kind == "histogram" else getattr(p, p.WhichOneof("value"))
                        attrs = tuple(sorted((kv.key, str(kv.value)) for kv in p.attributes))
                        key = (resource, m.name, attrs)
                        if key in last and value < last[key][1] and p.time_unix_nano > last[key][0]:
                            backwards.append((m.name, dict(attrs), last[key][1], value))
                        last[key] = (p.time_unix_nano, value)
    assert not backwards, backwards[:5]


# ============================================================================ alert rules


def _alert_exprs() -> list[tuple[str, str]]:
    return [
        (rule["alert"], rule["expr"])
        for path in ALERT_RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def test_alert_rules_use_names_the_real_run_exposes(run: Run, prometheus: str) -> None:
    """The SLA rules (deploy/prometheus/rules/) select series and labels the run really has, and
    every series they select has data in a Prometheus scraping it (their promtool tests use
    synthetic series with these same names)."""
    worker, producer = run.scrapes()
    monitor = run.monitor_scrape()
    series = worker.series_names() | producer.series_names() | monitor.series_names()
    labels = worker.label_names() | producer.label_names() | monitor.label_names() | sr.PROMETHEUS_TARGET_LABELS
    assert _alert_exprs()
    for alert, expr in _alert_exprs():
        metrics, used_labels = sq.promql_names_of(expr)
        assert metrics <= series, f"{alert}: {metrics - series} not exposed"
        assert used_labels <= labels, f"{alert}: {used_labels - labels} not exposed"
        selectors = [f"{name}{{{matchers}}}" for name, matchers in re.findall(r"\b([a-z_]+)\{([^}]*)\}", expr)]
        for selector in [*sorted(metrics), *selectors]:
            assert _query(prometheus, selector), f"{alert}: no data for {selector}"
        _query(prometheus, expr)  # evaluates (whether it fires depends on the run)
