"""Metrics from real worker processes: OTLP to a real receiver, and a Prometheus scrape over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue

from tests.metric_points import from_otlp, totals
from tests.otlp_receiver import free_port, otlp_receiver
from tests.processes import enqueue_cmd, env_with, instrumented, rq_worker_cmd, run, tool

SUCCESSES, FAILURES, RETRIED = 200, 40, 20  # 300 jobs
EXPECTED_CONSUMED = {"success": SUCCESSES, "failure": FAILURES + RETRIED, "retried": 2 * RETRIED}
ATTEMPTS = SUCCESSES + FAILURES + 3 * RETRIED


def enqueue_mix(redis_url: str, queue: str, env: dict[str, str], s: int, f: int, r: int) -> None:
    run(instrumented(sys.executable, "-m", "tests.enqueue_mix", redis_url, queue, str(s), str(f), str(r)), env)


@pytest.mark.parametrize("worker_flags", [[], ["-w", "rq.worker.SimpleWorker"]], ids=["Worker", "SimpleWorker"])
def test_three_hundred_jobs_counted_exactly_at_an_otlp_receiver(redis_url, worker_flags):
    with otlp_receiver() as receiver:
        metrics_env = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
        # Distinct services: processes reporting the same cumulative series must be told apart.
        producer_env = env_with({**receiver.otel_env("metered-producer"), **metrics_env})
        worker_env = env_with({**receiver.otel_env("metered-worker"), **metrics_env})
        enqueue_mix(redis_url, "metered", producer_env, SUCCESSES, FAILURES, RETRIED)
        run(instrumented(*rq_worker_cmd(redis_url, "metered", *worker_flags)), worker_env)

        def complete(received) -> bool:
            points = from_otlp(received.metric_requests)
            sent = totals(points, "messaging.client.sent.messages", "messaging.operation.name")
            consumed = totals(points, "messaging.client.consumed.messages", "clues.outcome")
            return consumed == EXPECTED_CONSUMED and sent.get("send", 0) >= SUCCESSES + FAILURES + 3 * RETRIED

        received = receiver.wait_for(complete, timeout=60)
    points = from_otlp(received.metric_requests)
    assert totals(points, "messaging.process.duration", "clues.outcome") == EXPECTED_CONSUMED
    assert sum(totals(points, "rq.job.time_in_queue", "clues.outcome").values()) == ATTEMPTS
    assert totals(points, "messaging.client.sent.messages", "messaging.operation.name") == {
        "send": SUCCESSES + FAILURES + RETRIED + 2 * RETRIED
    }
    errors = totals(points, "messaging.client.consumed.messages", "error.type")
    assert errors == {None: SUCCESSES, "ValueError": FAILURES + 3 * RETRIED}


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sum_by(samples, name: str, label: str) -> dict[str, float]:
    summed: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        if sample == name:
            key = dict(labels).get(label, "")
            summed[key] = summed.get(key, 0) + value
    return summed


def test_forking_worker_metrics_scraped_by_prometheus(redis_url):
    port = free_port()
    env = env_with(
        {
            "OTEL_SERVICE_NAME": "scraped",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        }
    )
    successes, failures, retried = 30, 5, 5
    enqueue_mix(redis_url, "scraped", env, successes, failures, retried)
    worker = subprocess.Popen(
        instrumented(tool("rq"), "worker", "-u", redis_url, "scraped"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    expected = {"success": successes, "failure": failures + retried, "retried": 2 * retried}
    try:
        queue = Queue("scraped", connection=Redis.from_url(redis_url))
        deadline = time.monotonic() + 120
        samples: dict = {}
        while time.monotonic() < deadline:  # a live worker: poll its /metrics until every attempt is counted
            assert worker.poll() is None, worker.stderr.read() if worker.stderr else ""
            try:
                samples = scrape(port)
            except OSError:
                samples = {}
            if sum_by(samples, "messaging_client_consumed_messages_total", "clues_outcome") == expected:
                break
            time.sleep(0.2)
        assert len(queue) == 0
    finally:
        worker.terminate()
        worker.wait(30)
    assert sum_by(samples, "messaging_client_consumed_messages_total", "clues_outcome") == expected
    assert sum_by(samples, "messaging_process_duration_seconds_count", "clues_outcome") == expected
    assert sum(sum_by(samples, "rq_job_time_in_queue_seconds_count", "rq_job_func_name").values()) == (
        successes + failures + 3 * retried
    )
    buckets = {dict(labels)["le"] for (name, labels) in samples if name == "rq_job_time_in_queue_seconds_bucket"}
    assert {"2.5", "3600.0"} <= buckets or {"2.5", "3600"} <= buckets


def test_a_horse_that_enqueues_a_thousand_jobs_has_every_one_counted(redis_url):
    """Measurements made in a horse reach the worker one by one, however many (no per-horse cap,
    no payload cut by a full pipe)."""
    fan_out = "q" * 100  # a long queue name makes each forwarded report long too
    fan_out_count = 1000
    with otlp_receiver() as receiver:
        metrics_env = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
        worker_env = env_with({**receiver.otel_env("fan-out-worker"), **metrics_env})
        run(enqueue_cmd(redis_url, "fan", "tests.jobs.enqueue_jobs", 1, str(fan_out_count), fan_out), env_with({}))
        worker = run(instrumented(*rq_worker_cmd(redis_url, "fan")), worker_env)

        def sent_to_fan_out(received) -> float:
            points = from_otlp(received.metric_requests)
            return totals(points, "messaging.client.sent.messages", "messaging.destination.name").get(fan_out, 0)

        received = receiver.wait_for(lambda r: sent_to_fan_out(r) >= fan_out_count, timeout=60)
    assert sent_to_fan_out(received) == fan_out_count
    assert Queue(fan_out, connection=Redis.from_url(redis_url)).count == fan_out_count
    assert "clues: " not in worker.stderr, worker.stderr


def test_duration_histograms_from_a_forking_worker_carry_exemplars_of_the_jobs_traces(redis_url):
    """The worker records each job's measurements in the job's span context, so a slow point
    on a latency graph leads to that job's trace."""
    jobs = 5
    with otlp_receiver() as receiver:
        metrics_env = {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_METRIC_EXPORT_INTERVAL": "1000"}
        run(enqueue_cmd(redis_url, "exemplars", "tests.jobs.add", jobs, "1", "1"), env_with({}))
        run(instrumented(*rq_worker_cmd(redis_url, "exemplars")), env_with({**receiver.otel_env("ex"), **metrics_env}))

        def exemplar_traces(received, name: str) -> set[str]:
            return {
                exemplar.trace_id.hex()
                for request in received.metric_requests
                for resource_metrics in request.resource_metrics
                for scope_metrics in resource_metrics.scope_metrics
                for metric in scope_metrics.metrics
                if metric.name == name
                for point in metric.histogram.data_points
                for exemplar in point.exemplars
            }

        received = receiver.wait_for(
            lambda r: (
                len({s.trace_id for s in r.spans}) >= jobs
                and len(exemplar_traces(r, "messaging.process.duration")) >= 1
                and len(exemplar_traces(r, "rq.job.time_in_queue")) >= 1
            )
        )
    job_traces = {s.trace_id for s in received.spans if s.name == "process exemplars"}
    assert len(job_traces) == jobs
    for name in ("messaging.process.duration", "rq.job.time_in_queue"):
        assert exemplar_traces(received, name) <= job_traces, name
