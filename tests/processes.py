"""Run producers and workers as users run them: separate processes under `opentelemetry-instrument`."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def what_a_forked_child_reports(look: Callable[[], str]) -> str:
    """Fork; ``look()`` runs in the child, which leaves like a work horse (``os._exit``, no atexit).
    Returns what it reported (empty when ``look`` raised), once the child is reaped."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, look().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reports:
        report = reports.read().decode()
    os.waitpid(pid, 0)
    return report


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def env_with(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def instrumented(*args: str) -> list[str]:
    return [tool("opentelemetry-instrument"), *args]


def enqueue_cmd(redis_url: str, queue: str, func: str, count: int = 1, *args: str) -> list[str]:
    return [sys.executable, "-m", "tests.enqueue", redis_url, queue, func, str(count), *args]


def rq_worker_cmd(redis_url: str, queue: str, *flags: str) -> list[str]:
    return [tool("rq"), "worker", "--burst", "-u", redis_url, *flags, queue]


class RunningWorker:
    """A long-running instrumented `rq worker` (not --burst); its stderr goes to a file, so a
    chatty worker never blocks on a full pipe."""

    def __init__(self, redis_url: str, queue: str, env: dict[str, str], *flags: str) -> None:
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives as long as the worker)
        self.process = subprocess.Popen(
            instrumented(tool("rq"), "worker", "-u", redis_url, *flags, queue),
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            text=True,
        )

    def stderr(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def running_worker(redis_url: str, queue: str, env: dict[str, str], *flags: str) -> Iterator[RunningWorker]:
    """A worker (``rq worker`` with ``flags``) that runs while the block does, stopped with SIGTERM at its end."""
    worker = RunningWorker(redis_url, queue, env, *flags)
    try:
        yield worker
    finally:
        worker.stop()


def wait_until_done(queue: Any, count: int, worker: RunningWorker, timeout: float = 300) -> None:
    """Until ``count`` jobs of ``queue`` have ended (finished or failed), while the worker lives."""
    deadline = time.monotonic() + timeout
    while queue.finished_job_registry.count + queue.failed_job_registry.count < count:
        assert worker.process.poll() is None, worker.stderr()
        assert time.monotonic() < deadline, f"{queue.finished_job_registry.count} of {count} jobs done"
        time.sleep(0.2)  # polling Redis for the jobs' end, not waiting out a guess
