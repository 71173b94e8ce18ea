"""``clues trace EVENT_HASH FILE...``: one job's events in order, the time between them."""

from __future__ import annotations

import gzip
import json

from opentelemetry_instrumentation_clues import cli
from tests.cli_support import event_line, job_lines, run_cli, write_lines

RETRIED = "0695f49c5e70fc18da91961113e1769a"
OTHER = "f" * 32


def retried_job_lines() -> list[str]:
    # Attempt 1 fails after 1.5 s, attempt 2 finishes after 0.25 s; waits of 0.52 s and 2 s.
    return job_lines(RETRIED, ["failed", "ok"], [0.52, 2.0], [1.5, 0.25], at=10)


def test_trace_table_in_order_with_deltas(tmp_path, capsys):
    lines = retried_job_lines()
    noise = job_lines(OTHER, ["ok"], [0.1], [0.1], at=10)
    mixed = [line for pair in zip(lines, noise + [""] * 10, strict=False) for line in pair if line]
    path = write_lines(tmp_path / "clues.log", mixed)
    assert cli.main(["trace", RETRIED, str(path)]) == 0
    out = capsys.readouterr().out
    assert f"event_hash:   {RETRIED}" in out
    assert "worker_class: tests.jobs.add" in out
    table = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert [row[4] for row in table] == [
        "enqueued",
        "dequeued",
        "perform_started",
        "failed",
        "dequeued",
        "perform_started",
        "perform_finished",
    ]
    assert [row[1] for row in table] == [
        "2013-06-04T21:00:08Z",
        "2013-06-04T21:00:08Z",
        "2013-06-04T21:00:08Z",
        "2013-06-04T21:00:10Z",
        "2013-06-04T21:00:12Z",
        "2013-06-04T21:00:12Z",
        "2013-06-04T21:00:12Z",
    ]
    assert [row[2] for row in table] == ["-", "+0", "+0", "+2s", "+2s", "+0", "+0"]
    assert [row[3] for row in table] == ["-", "+0", "+0", "+2s", "+4s", "+4s", "+4s"]
    assert [row[5] for row in table] == ["-", "1", "1", "1", "2", "2", "2"]
    assert "time_in_queue=520ms" in out
    assert "time_to_perform=1.5s ZeroDivisionError: division by zero" in out
    assert "outcome: succeeded; attempts: 2" in out
    assert OTHER not in out


def test_trace_merges_files_in_lifecycle_order(tmp_path):
    """The producer's log and the worker's log, given worker first: enqueued still comes first."""
    lines = retried_job_lines()
    producer = write_lines(tmp_path / "web.log", lines[:1])
    worker = write_lines(tmp_path / "worker.log.gz", [])
    worker.write_bytes(gzip.compress("".join(line + "\n" for line in lines[1:]).encode()))
    proc = run_cli("trace", "--json", RETRIED, str(worker), str(producer))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [e["event_type"] for e in doc["events"]] == [
        "enqueued",
        "dequeued",
        "perform_started",
        "failed",
        "dequeued",
        "perform_started",
        "perform_finished",
    ]
    assert doc["events"][0]["source"] == f"{producer}:1"
    assert [e["seconds_since_previous"] for e in doc["events"]] == [None, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0]
    assert doc["events"][3]["metadata"]["backtrace"][0].startswith("tests/jobs.py")


def test_trace_from_stdin_with_backtrace_and_malformed_line():
    lines = job_lines(RETRIED, ["failed"], [0.1], [0.2])
    payload = "\n".join([lines[0], "{oops", *lines[1:]]).encode()
    proc = run_cli("trace", RETRIED.upper(), "-", "--backtrace", stdin=payload)
    assert proc.returncode == 0, proc.stderr
    assert "outcome: failed; attempts: 1" in proc.stdout
    assert "  tests/jobs.py:12:in `div'" in proc.stdout
    assert "skipped 1 malformed line(s) (invalid JSON: 1)" in proc.stderr
    assert "<stdin>:2: invalid JSON" in proc.stderr


def test_trace_not_found_exits_1(tmp_path, capsys):
    path = write_lines(tmp_path / "clues.log", job_lines(OTHER, ["ok"], [0.1], [0.1]))
    proc = run_cli("trace", RETRIED, str(path))
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert f"no events with event_hash {RETRIED}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert cli.main(["trace", RETRIED, str(path)]) == 1
    assert "no events" in capsys.readouterr().err


def test_trace_usage_errors(tmp_path):
    proc = run_cli("trace", RETRIED)  # no FILE
    assert proc.returncode == 2
    assert "the following arguments are required: FILE" in proc.stderr
    missing = run_cli("trace", RETRIED, str(tmp_path / "nope.log"))
    assert missing.returncode == 2
    assert "cannot open" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_trace_keeps_user_metadata_in_json(tmp_path, capsys):
    line = event_line("enqueued", RETRIED, customer_id=42, kwargs={"x": 1})
    path = write_lines(tmp_path / "clues.log", [line])
    assert cli.main(["trace", "--json", RETRIED, str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["events"][0]["metadata"]["customer_id"] == 42
    assert doc["events"][0]["metadata"]["kwargs"] == {"x": 1}


def test_trace_one_file_without_attempts_keeps_written_order(tmp_path, capsys):
    """Retries within one second and no `attempt` metadata: the file's own order is the truth."""
    lines = job_lines(RETRIED, ["failed", "failed", "ok"], [0.1] * 3, [0.1] * 3, with_attempt=False)
    path = write_lines(tmp_path / "clues.log", lines)
    assert cli.main(["trace", "--json", RETRIED, str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["event_type"] for e in doc["events"]] == [json.loads(line)["event_type"] for line in lines]
    assert [e["event_type"] for e in doc["events"]][3:5] == ["failed", "dequeued"]
