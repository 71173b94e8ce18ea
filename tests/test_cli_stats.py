"""``clues stats``: counts, percentiles (against exact values), SLA share, malformed lines, inputs."""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import random
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from opentelemetry_instrumentation_clues import cli
from opentelemetry_instrumentation_clues.cli.event_log import (
    Malformed,
    Progress,
    iter_events,
    parse_duration,
    parse_event,
)
from opentelemetry_instrumentation_clues.cli.stats import LogHistogram, StatsCollector
from tests.cli_support import REPO_ROOT, cli_env, event_line, failure_meta, job_lines, run_cli, write_lines

GROUPS = [("default", "tests.jobs.add"), ("default", "tests.jobs.div"), ("high", "tests.jobs.add")]
SCENARIOS = [
    (["ok"], 0.78),
    (["failed"], 0.1),
    (["failed", "ok"], 0.07),
    (["failed", "failed", "failed"], 0.05),
]
SLA = 0.75
REL = LogHistogram.RELATIVE_ERROR


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


class Expected:
    def __init__(self) -> None:
        self.jobs = 0
        self.failures = 0
        self.retried = 0
        self.tiq: list[float] = []
        self.ttp: list[float] = []


def build_dataset(n_jobs: int, seed: int = 1234) -> tuple[list[str], dict[tuple[str, str], Expected]]:
    """Interleaved lines of n_jobs jobs plus the expected per-group figures, computed directly."""
    rng = random.Random(seed)
    expected = {key: Expected() for key in GROUPS}
    per_job: list[list[str]] = []
    for i in range(n_jobs):
        queue, worker_class = rng.choice(GROUPS)
        outcomes = rng.choices([s for s, _ in SCENARIOS], weights=[w for _, w in SCENARIOS])[0]
        tiqs = [0.0 if rng.random() < 0.03 else round(rng.lognormvariate(-1, 1.2), 6) for _ in outcomes]
        ttps = [round(rng.lognormvariate(-3, 1.5), 6) for _ in outcomes]
        event_hash = f"{i:032x}"
        per_job.append(job_lines(event_hash, outcomes, tiqs, ttps, at=i, queue=queue, worker_class=worker_class))
        exp = expected[(queue, worker_class)]
        exp.jobs += 1
        exp.failures += outcomes[-1] == "failed"
        exp.retried += len(outcomes) > 1
        exp.tiq += tiqs
        exp.ttp += ttps
    # An in-flight job (no terminal event): not a job yet, but its dequeue counts for time_in_queue.
    in_flight = f"{n_jobs:032x}"
    per_job.append(
        [
            event_line("enqueued", in_flight, queue="high"),
            event_line("dequeued", in_flight, queue="high", time_in_queue=3.25),
        ]
    )
    expected[("high", "tests.jobs.add")].tiq.append(3.25)
    # Interleave the jobs, keeping each job's own order.
    lines: list[str] = []
    cursors = [0] * len(per_job)
    live = list(range(len(per_job)))
    while live:
        k = rng.randrange(len(live))
        j = live[k]
        lines.append(per_job[j][cursors[j]])
        cursors[j] += 1
        if cursors[j] == len(per_job[j]):
            live[k] = live[-1]
            live.pop()
    return lines, expected


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], Expected]]:
    lines, expected = build_dataset(3000)
    path = tmp_path_factory.mktemp("stats") / "clues.log"
    write_lines(path, lines)
    return path, expected


def assert_close(actual: float | None, exact: float) -> None:
    assert actual is not None
    assert abs(actual - exact) <= REL * exact + 1e-9, (actual, exact)


def check_summary(summary: dict[str, Any], values: list[float]) -> None:
    assert summary["count"] == len(values)
    for q in (50, 95, 99):
        assert_close(summary[f"p{q}"], nearest_rank(values, q))


def run_main_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any], str]:
    code = cli.main(["stats", "--json", *argv])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_stats_json_matches_exact_figures(dataset, capsys):
    path, expected = dataset
    code, doc, err = run_main_json(capsys, "--sla", "750ms", str(path))
    assert code == 0
    assert err == ""
    assert doc["malformed"]["count"] == 0
    assert doc["percentile_relative_error"] == REL
    groups = {(g["queue"], g["worker_class"]): g for g in doc["groups"]}
    assert set(groups) == set(GROUPS)
    for key, exp in expected.items():
        group = groups[key]
        assert group["jobs"] == exp.jobs
        assert group["failures"] == exp.failures
        assert group["succeeded"] == exp.jobs - exp.failures
        assert group["retried_jobs"] == exp.retried
        assert group["failure_rate"] == pytest.approx(exp.failures / exp.jobs)
        check_summary(group["time_in_queue"], exp.tiq)
        check_summary(group["time_to_perform"], exp.ttp)
        assert group["sla"]["threshold_seconds"] == SLA
        assert group["sla"]["dequeues"] == len(exp.tiq)
        assert group["sla"]["within"] == sum(1 for v in exp.tiq if v <= SLA)
    totals = doc["totals"]
    all_tiq = [v for exp in expected.values() for v in exp.tiq]
    all_ttp = [v for exp in expected.values() for v in exp.ttp]
    assert totals["jobs"] == sum(exp.jobs for exp in expected.values()) == 3000
    assert totals["failures"] == sum(exp.failures for exp in expected.values())
    check_summary(totals["time_in_queue"], all_tiq)
    check_summary(totals["time_to_perform"], all_ttp)
    assert totals["sla"]["share"] == pytest.approx(sum(1 for v in all_tiq if v <= SLA) / len(all_tiq))


def test_stats_table_via_subprocess(dataset):
    path, expected = dataset
    proc = run_cli("stats", str(path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:5] == ["queue", "worker_class", "jobs", "failed", "fail%"]
    assert lines[0].split()[-1] == "tiq<=2s"  # the default SLA
    rows = {tuple(line.split()[:2]): line.split() for line in lines[1:] if not line.startswith("-")}
    for (queue, worker_class), exp in expected.items():
        row = rows[(queue, worker_class)]
        assert int(row[2]) == exp.jobs
        assert int(row[3]) == exp.failures
    total_row = next(line.split() for line in lines if line.startswith("TOTAL"))
    assert int(total_row[1]) == 3000
    assert int(total_row[2]) == sum(exp.failures for exp in expected.values())
    assert "\r" not in proc.stderr  # no progress indicator when stderr is not a terminal


def test_gzip_and_stdin_give_the_same_answer(dataset, tmp_path, capsys):
    path, _ = dataset
    gz = tmp_path / "clues.log.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    _, plain, _ = run_main_json(capsys, str(path))
    _, from_gz, _ = run_main_json(capsys, str(gz))
    assert from_gz["groups"] == plain["groups"]
    # gzip is recognised by content, not by name; stdin may be gzip too.
    disguised = tmp_path / "rotated.1"
    disguised.write_bytes(gz.read_bytes())
    _, from_disguised, _ = run_main_json(capsys, str(disguised))
    assert from_disguised["groups"] == plain["groups"]
    for payload in (path.read_bytes(), gz.read_bytes()):
        proc = run_cli("stats", "--json", "-", stdin=payload)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["groups"] == plain["groups"]


def test_stdin_via_main(monkeypatch, capsys):
    data = "\n".join(job_lines("a" * 32, ["failed", "ok"], [0.5, 0.25], [0.1, 0.2])) + "\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data.encode())))
    code, doc, _ = run_main_json(capsys, "-")
    assert code == 0
    assert doc["inputs"] == ["-"]
    (group,) = doc["groups"]
    assert (group["jobs"], group["failures"], group["retried_jobs"]) == (1, 0, 1)


def test_retried_job_counts_once_with_final_outcome(tmp_path, capsys):
    lines = [
        *job_lines("1" * 32, ["failed", "failed", "ok"], [0.1, 0.2, 0.3], [1.0, 2.0, 3.0]),
        *job_lines("2" * 32, ["failed", "failed"], [0.1, 0.2], [1.0, 2.0], with_attempt=False),
        *job_lines("3" * 32, ["ok"], [0.4], [4.0]),
    ]
    code, doc, _ = run_main_json(capsys, str(write_lines(tmp_path / "retry.log", lines)))
    assert code == 0
    (group,) = doc["groups"]
    assert group["jobs"] == 3
    assert group["failures"] == 1
    assert group["succeeded"] == 2
    assert group["retried_jobs"] == 2
    assert group["events"]["failed"] == 4
    assert group["time_to_perform"]["count"] == 6
    assert group["time_in_queue"]["count"] == 6


def test_malformed_lines_are_counted_not_fatal(tmp_path, capsys):
    good = job_lines("b" * 32, ["ok"], [0.5], [0.1])
    bad_failed = json.loads(event_line("failed", "b" * 32, **failure_meta(0.1)))
    del bad_failed["metadata"]["backtrace"]
    lines = [
        good[0],
        '{"event_type":"dequeued","timestamp":"2013-06-04T20:59:58Z",',  # truncated JSON
        good[1],
        event_line("dequeued", "b" * 32, process="30731", time_in_queue=0.5),  # type: ignore[arg-type]
        event_line("dequeued", "b" * 32),  # no time_in_queue
        json.dumps(bad_failed),
        "[1, 2, 3]",
        event_line("enqueued", "b" * 32).replace("2013-06-04T20:59:58Z", "yesterday"),
        "",
        *good[2:],
    ]
    path = write_lines(tmp_path / "corrupt.log", lines)
    with path.open("ab") as fh:
        fh.write(b"\xff\xfe not utf-8\n")
    code, doc, err = run_main_json(capsys, str(path))
    assert code == 0
    assert doc["malformed"]["count"] == 7
    assert doc["malformed"]["by_reason"] == {
        "invalid JSON": 1,
        "bad metadata.process": 1,
        "missing metadata.time_in_queue": 1,
        "missing metadata.backtrace": 1,
        "not a JSON object": 1,
        "bad timestamp": 1,
        "not UTF-8": 1,
    }
    assert doc["malformed"]["examples"][0] == f"{path}:2: invalid JSON"
    assert "skipped 7 malformed line(s)" in err
    (group,) = doc["groups"]
    assert group["jobs"] == 1
    assert group["events"] == {"dequeued": 1, "enqueued": 1, "perform_finished": 1, "perform_started": 1}
    # The same through a subprocess: a table on stdout, the summary on stderr, exit 0.
    proc = run_cli("stats", str(path))
    assert proc.returncode == 0
    assert "TOTAL" in proc.stdout
    assert "skipped 7 malformed line(s)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_valid_events_exits_1(tmp_path):
    path = write_lines(tmp_path / "junk.log", ["not json", "{}"])
    proc = run_cli("stats", str(path))
    assert proc.returncode == 1
    assert "no valid events" in proc.stderr
    assert "skipped 2 malformed line(s)" in proc.stderr
    empty = write_lines(tmp_path / "empty.log", [])
    assert cli.main(["stats", str(empty)]) == 1


def test_user_errors_have_no_traceback(tmp_path):
    good = write_lines(tmp_path / "ok.log", job_lines("c" * 32, ["ok"], [0.5], [0.1]))
    missing = run_cli("stats", str(good), str(tmp_path / "missing.log"))
    assert missing.returncode == 2
    assert "cannot open" in missing.stderr and "missing.log" in missing.stderr
    assert missing.stdout == ""  # fails before printing anything
    bad_sla = run_cli("stats", "--sla", "soon", str(good))
    assert bad_sla.returncode == 2
    assert "invalid duration 'soon'" in bad_sla.stderr
    directory = run_cli("trace", "c" * 32, str(tmp_path))
    assert directory.returncode == 2
    no_args = run_cli()
    assert no_args.returncode == 2
    for proc in (missing, bad_sla, directory, no_args):
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", [[], ["stats"], ["trace"], ["tail"]])
def test_help_on_every_command(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # same wrapping in this process and the subprocess
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: clues")
    assert cli.main([*command, "--help"]) == 0
    assert capsys.readouterr().out == proc.stdout


def test_stats_help_documents_the_definitions_and_error_bound():
    out = run_cli("stats", "--help").stdout
    assert "within 1% (relative) of the exact value" in out
    assert "distinct event_hash with a terminal event" in out


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("1h", 3600.0), ("3", 3.0), ("0.25", 0.25), (" 2S ", 2.0)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "2x", "-1s", "1.5.2m", "ms", "2 s s"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_custom_sla_changes_the_share(tmp_path, capsys):
    lines = [
        line for i, tiq in enumerate([0.4, 0.6, 1.2, 2.5]) for line in job_lines(f"{i:032x}", ["ok"], [tiq], [0.1])
    ]
    path = str(write_lines(tmp_path / "sla.log", lines))
    shares = {}
    for sla in ("500ms", "1.5s", "2s", "1h"):
        _, doc, _ = run_main_json(capsys, "--sla", sla, path)
        shares[sla] = doc["totals"]["sla"]["within"]
    assert shares == {"500ms": 1, "1.5s": 3, "2s": 3, "1h": 4}


def test_histogram_error_bound_on_wide_range():
    rng = random.Random(7)
    values = [rng.lognormvariate(0, 4) for _ in range(20000)] + [0.0] * 50 + [1e-7] * 10
    hist = LogHistogram()
    for value in values:
        hist.add(value)
    for q in (1, 10, 25, 50, 75, 90, 95, 99, 99.9, 100):
        exact = nearest_rank(values, q)
        estimate = hist.quantile(q)
        assert estimate is not None
        if exact < LogHistogram.MIN_VALUE:
            assert estimate == 0.0
        else:
            assert abs(estimate - exact) <= REL * exact * (1 + 1e-9), (q, estimate, exact)
    assert len(hist.buckets) < 1600
    assert LogHistogram().quantile(50) is None


def test_memory_stays_flat(tmp_path):
    """A ~12 MB input is processed without holding it: peak traced memory stays a few MB."""
    path = tmp_path / "big.log"
    with path.open("w") as fh:
        for i in range(10000):
            outcomes = ["failed", "ok"] if i % 50 == 0 else ["ok"]
            for line in job_lines(f"{i:032x}", outcomes, [0.1 * (i % 37)] * len(outcomes), [0.01] * len(outcomes)):
                fh.write(line + "\n")
    size = path.stat().st_size
    assert size > 10_000_000
    malformed = Malformed()
    collector = StatsCollector(2.0)
    tracemalloc.start()
    try:
        for event in iter_events([str(path)], malformed):
            collector.add(event)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    groups = collector.finish()
    assert groups[0].jobs == 10000
    assert groups[0].retried == 200
    assert not collector.pending_failed
    assert peak < 2_000_000, peak  # the input is 5x larger


def test_progress_only_on_a_terminal():
    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    for tty in (True, False):
        stream = Stream(tty)
        progress = Progress(1000, stream=stream, delay=0)
        progress.update(500, 10)
        progress.close()
        assert ("50.0%" in stream.getvalue()) is tty


def test_parse_event_keeps_user_metadata():
    line = event_line("dequeued", "d" * 32, time_in_queue=1, customer_id=42, attempt=2, job_id="j1")
    event = parse_event(line)
    assert not isinstance(event, str)
    assert event.metadata["customer_id"] == 42
    assert event.attempt == 2
    assert event.time_in_queue == 1.0
    assert event.line == line


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_indicator_on_a_real_terminal(tmp_path):
    import pty

    path = tmp_path / "clues.log"
    write_lines(path, [line for i in range(1500) for line in job_lines(f"{i:032x}", ["ok"], [0.1], [0.1])])
    env = {**cli_env(), "OTEL_PYTHON_CLUES_PROGRESS_DELAY": "0"}
    command = [sys.executable, "-m", "opentelemetry_instrumentation_clues.cli", "stats", str(path)]
    outputs = {}
    for name, extra in (("tty", []), ("no-progress", ["--no-progress"])):
        controller, terminal = pty.openpty()
        try:
            proc = subprocess.run(
                command + extra, stdout=subprocess.PIPE, stderr=terminal, env=env, cwd=REPO_ROOT, timeout=60
            )
        finally:
            os.close(terminal)
        chunks = []
        try:
            while chunk := os.read(controller, 65536):
                chunks.append(chunk)
        except OSError:  # EIO once the terminal side is closed and drained (Linux)
            pass
        os.close(controller)
        assert proc.returncode == 0
        outputs[name] = b"".join(chunks).decode()
    assert "% " in outputs["tty"] and "lines" in outputs["tty"]
    assert "\r" in outputs["tty"]
    assert outputs["no-progress"] == ""


def test_truncated_gzip_is_a_clear_error(tmp_path):
    data = gzip.compress("".join(line + "\n" for line in job_lines("e" * 32, ["ok"], [0.5], [0.1]) * 200).encode())
    path = tmp_path / "partial.log.gz"
    path.write_bytes(data[: len(data) // 2])
    proc = run_cli("stats", str(path))
    assert proc.returncode == 2
    assert f"cannot read {path}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_extra_event_types_are_counted_not_malformed(tmp_path, capsys):
    lines = [
        event_line("scheduled", "f" * 32),
        *job_lines("f" * 32, ["ok"], [0.5], [0.1]),
        event_line("custom", "f" * 32),
    ]
    code, doc, err = run_main_json(capsys, str(write_lines(tmp_path / "extra.log", lines)))
    assert code == 0
    assert err == ""
    (group,) = doc["groups"]
    assert group["events"]["scheduled"] == 1
    assert group["events"]["custom"] == 1
    assert group["jobs"] == 1
