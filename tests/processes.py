"""Run producers and workers as users run them: separate processes under `opentelemetry-instrument`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


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
