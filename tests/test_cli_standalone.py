"""``clues stats|trace|tail`` with the package alone: no OpenTelemetry, no rq (``pip install --no-deps``).

Each command runs in a subprocess where importing ``opentelemetry``, ``rq``, ``redis`` or ``wrapt``
fails, as it would where only this package is installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cli_support import REPO_ROOT, cli_env, event_line, job_lines, write_lines

BLOCKED = ("opentelemetry", "rq", "redis", "wrapt")

# Runs ARGV[1:] as `python -m opentelemetry_instrumentation_clues.cli` (or imports the package's
# cli when there are none) behind a meta-path finder that refuses the blocked top-level names.
_WRAPPER = f"""
import runpy, sys

BLOCKED = {BLOCKED!r}
assert not [m for m in sys.modules if m.split(".")[0] in BLOCKED], "imported before the test began"


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
if len(sys.argv) == 1:
    import opentelemetry_instrumentation_clues.cli  # noqa: F401
    print("imported")
else:
    sys.argv[0] = "clues"
    runpy.run_module("opentelemetry_instrumentation_clues.cli", run_name="__main__", alter_sys=True)
"""


def run_blocked(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WRAPPER, *args],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO_ROOT,
        timeout=60,
    )


def legacy_log(tmp_path: Path) -> tuple[Path, str]:
    event_hash = "0695f49c5e70fc18da91961113e1769a"
    lines = [event_line("deferred", event_hash, at=0, attempt=0)]
    lines += job_lines(event_hash, ["fail", "ok"], [0.5, 0.25], [1.0, 2.0], at=1)
    return write_lines(tmp_path / "clues.log", lines), event_hash


def test_importing_the_cli_needs_neither_opentelemetry_nor_rq():
    proc = run_blocked()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "imported"


def test_stats_runs_with_the_package_alone(tmp_path):
    path, _ = legacy_log(tmp_path)
    proc = run_blocked("stats", "--no-progress", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["events"] == 8
    assert [(g["jobs"], g["succeeded"], g["retried_jobs"]) for g in doc["groups"]] == [(1, 1, 1)]


def test_trace_runs_with_the_package_alone_and_orders_deferred_first(tmp_path):
    path, event_hash = legacy_log(tmp_path)
    proc = run_blocked("trace", "--json", event_hash, str(path))
    assert proc.returncode == 0, proc.stderr
    types = [event["event_type"] for event in json.loads(proc.stdout)["events"]]
    assert types[:3] == ["deferred", "enqueued", "dequeued"]


def test_tail_accepts_deferred_with_the_package_alone(tmp_path):
    path, event_hash = legacy_log(tmp_path)
    proc = run_blocked("tail", "--from-start", "--event-type", "deferred", "--max-events", "1", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "deferred" in proc.stdout and event_hash[:8] in proc.stdout
