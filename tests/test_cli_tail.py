"""``clues tail``: follow a live log across rotation and truncation; filters; clean Ctrl-C.

Synchronisation is by observed output only: the test waits (bounded poll) until the tail process
has printed what it must print before the writer moves to the next phase.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from opentelemetry_instrumentation_clues import cli
from tests.cli_support import REPO_ROOT, cli_env, event_line, failure_meta, write_lines

TIMEOUT = 20.0


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class TailProcess:
    """`clues tail ...` in a subprocess; stdout and stderr collected line by line by reader threads."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "opentelemetry_instrumentation_clues.cli", "tail", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env(),
            cwd=REPO_ROOT,
            text=True,
            # As from a terminal: a launcher that runs the suite in the background (a shell without
            # job control) leaves SIGINT ignored, and Python then keeps it ignored: Ctrl-C does nothing.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _pump(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def wait_lines(self, n: int) -> None:
        wait_for(lambda: len(self.out) >= n, f"{n} output lines (have {self.out}, stderr {self.err})")

    def finish(self, timeout: float = TIMEOUT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        for thread in self._threads:
            thread.join(timeout)
        return code


def h(n: int) -> str:
    return f"{n:04x}" + "ab" * 14


def ev(n: int, event_type: str = "dequeued", **kw) -> str:
    meta = {"time_in_queue": 0.5} if event_type == "dequeued" else {}
    if event_type == "failed":
        meta = failure_meta(0.25)
    return event_line(event_type, h(n), at=n, **meta, **kw)


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))


def test_tail_follows_across_rotation_truncation_and_recreation(tmp_path):
    path = tmp_path / "clues.log"
    lines = [ev(n) for n in range(1, 11)]
    write_lines(path, lines[:2])
    tail = TailProcess(str(path), "--raw", "--from-start", "--max-events", "10", "--poll-interval", "20ms")
    try:
        tail.wait_lines(2)

        # A writer mid-line: the half line is held back until its newline arrives.
        with path.open("a", encoding="utf-8") as fh:
            fh.write(lines[2] + "\n" + lines[3][:40])
            fh.flush()
            time.sleep(0.1)  # give the tail a chance to see the half line (not a synchronisation)
            fh.write(lines[3][40:] + "\n")
        tail.wait_lines(4)

        # Rotation (logrotate's create mode): a last line lands in the old file just before the move.
        append(path, lines[4])
        os.rename(path, tmp_path / "clues.log.1")
        write_lines(path, lines[5:7])
        tail.wait_lines(7)

        # copytruncate: the file shrinks under the reader.
        with path.open("w", encoding="utf-8") as fh:
            fh.write(lines[7] + "\n")
        tail.wait_lines(8)

        # Deleted and recreated (the inode number may well be reused).
        path.unlink()
        write_lines(path, lines[8:10])
        code = tail.finish()
    finally:
        if tail.proc.poll() is None:
            tail.proc.kill()
    assert code == 0, tail.err
    assert tail.out == lines  # every event exactly once, in order, byte for byte
    stderr = "\n".join(tail.err)
    assert "rotated" in stderr
    assert "truncated" in stderr
    assert "Traceback" not in stderr


def test_tail_starts_at_the_end_by_default(tmp_path):
    path = write_lines(tmp_path / "clues.log", [ev(1), ev(2)])
    tail = TailProcess(str(path), "--max-events", "1", "--poll-interval", "20ms")
    probes: list[str] = []
    try:
        # The tail may not have opened the file yet: append probes until it reports one (bounded).
        deadline = time.monotonic() + TIMEOUT
        while not tail.out and tail.proc.poll() is None:
            assert time.monotonic() < deadline, tail.err
            probes.append(h(100 + len(probes)))
            append(path, ev(99 + len(probes)))
            time.sleep(0.05)  # pacing of the probes, not a synchronisation
        assert tail.finish() == 0
    finally:
        if tail.proc.poll() is None:
            tail.proc.kill()
    assert len(tail.out) == 1
    printed_hash = tail.out[0].split()[4]
    assert printed_hash in probes  # never one of the events already in the file
    assert " dequeued " in tail.out[0]


def test_tail_waits_for_a_missing_file(tmp_path):
    path = tmp_path / "later.log"
    tail = TailProcess(str(path), "--max-events", "1", "--poll-interval", "20ms", "--from-start")
    try:
        wait_for(lambda: any("waiting for it to appear" in line for line in tail.err), "the waiting notice")
        write_lines(path, [ev(7, "enqueued")])
        assert tail.finish() == 0
    finally:
        if tail.proc.poll() is None:
            tail.proc.kill()
    assert tail.out == [
        f"2013-06-04T21:00:05Z enqueued         test_queue tests.jobs.add {h(7)} worker-1:30731 args=[1, 2]"
    ]


def test_tail_filters_and_compact_format_via_main(tmp_path, capsys):
    path = write_lines(
        tmp_path / "clues.log",
        [
            ev(1, "failed", queue="other"),
            ev(2, "dequeued", queue="q1"),
            "{not json",
            ev(3, "failed", queue="q1", worker_class="tests.jobs.div", attempt=2),
            ev(4, "failed", queue="q1"),
            ev(5, "failed", queue="q1", worker_class="tests.jobs.div"),
        ],
    )
    argv = ["tail", str(path), "--from-start", "--max-events", "2", "--poll-interval", "10ms"]
    assert cli.main([*argv, "--queue", "q1", "--event-type", "failed", "--worker-class", "tests.jobs.div"]) == 0
    captured = capsys.readouterr()
    out = captured.out.splitlines()
    assert len(out) == 2
    assert out[0].startswith("2013-06-04T21:00:01Z failed ")
    assert f" q1 tests.jobs.div {h(3)} worker-1:30731 attempt=2 time_to_perform=250ms" in out[0]
    assert out[0].endswith("ZeroDivisionError: division by zero args=[1, 2]")
    assert f" {h(5)} " in out[1]
    assert "skipped a malformed line (invalid JSON)" in captured.err

    assert cli.main([*argv, "--raw", "--event-type", "dequeued", "--event-type", "failed", "--queue", "q1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        ev(2, "dequeued", queue="q1"),
        ev(3, "failed", queue="q1", worker_class="tests.jobs.div", attempt=2),
    ]


def test_tail_sigint_exits_0_without_traceback(tmp_path):
    path = write_lines(tmp_path / "clues.log", [ev(1)])
    tail = TailProcess(str(path), "--from-start", "--poll-interval", "20ms")
    try:
        tail.wait_lines(1)
        assert tail.proc.poll() is None  # still following
        tail.proc.send_signal(signal.SIGINT)
        code = tail.finish()
    finally:
        if tail.proc.poll() is None:
            tail.proc.kill()
    assert code == 0
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in tail.err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--event-type", "exploded"], "invalid choice: 'exploded'"),
        (["--max-events", "0"], "must be >= 1"),
        (["--poll-interval", "fast"], "invalid duration"),
    ],
)
def test_tail_usage_errors(tmp_path, capsys, args, message):
    path = write_lines(tmp_path / "clues.log", [ev(1)])
    assert cli.main(["tail", str(path), *args]) == 2
    assert message in capsys.readouterr().err


def test_tail_refuses_stdin_and_directories(tmp_path, capsys):
    assert cli.main(["tail", "-"]) == 2
    assert cli.main(["tail", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot follow stdin" in err
    assert "is a directory" in err


def test_follow_lines_step_by_step(tmp_path, monkeypatch):
    """The follower as a generator, driven from this thread: every step is deterministic."""
    from opentelemetry_instrumentation_clues.cli import tail as tail_mod

    path = tmp_path / "clues.log"
    notices: list[str] = []
    deadline = time.monotonic() + TIMEOUT  # a missed line ends the generator: StopIteration, not a hang
    lines = tail_mod.follow_lines(
        str(path),
        from_start=True,
        poll_interval=0.005,
        on_notice=notices.append,
        should_stop=lambda: time.monotonic() > deadline,
    )
    path.write_bytes(b"a\r\nb\n")
    assert next(lines) == b"a"
    assert next(lines) == b"b"
    assert notices == [
        f"{path}: no such file yet; waiting for it to appear",
        f"{path}: following the new file",
    ]

    append(path, "c")  # lands in the old file just before the move
    os.rename(path, tmp_path / "clues.log.1")
    path.write_bytes(b"d\n")
    assert next(lines) == b"c"
    assert next(lines) == b"d"

    # Deleted and recreated with the same inode number (simulated): the deleted file is noticed.
    monkeypatch.setattr(tail_mod, "_same_file", lambda a, b: True)
    path.unlink()
    path.write_bytes(b"eeeeeeee\n")
    assert next(lines) == b"eeeeeeee"
    monkeypatch.undo()

    path.write_bytes(b"f\n")  # truncated (copytruncate) and rewritten, shorter than what was read
    assert next(lines) == b"f"
    lines.close()
    assert any("rotated" in notice for notice in notices)
    assert any("truncated" in notice for notice in notices)


def test_follow_from_the_end_skips_a_half_written_line(tmp_path):
    from opentelemetry_instrumentation_clues.cli import tail as tail_mod

    path = tmp_path / "clues.log"
    path.write_bytes(b"old\nhalf a li")
    deadline = time.monotonic() + TIMEOUT
    lines = tail_mod.follow_lines(str(path), poll_interval=0.005, should_stop=lambda: time.monotonic() > deadline)
    with path.open("ab") as fh:
        fh.write(b"ne\nnew\n")
    # follow_lines opened the file (at its end, mid-line) before this append.
    assert next(lines) == b"new"
    lines.close()
