"""Job functions the tests enqueue (importable by worker subprocesses)."""

from __future__ import annotations

import os
import time

from opentelemetry import trace


def add(a: int, b: int) -> int:
    return a + b


def fail(message: str = "boom") -> None:
    raise ValueError(message)


# In-process tests point this at their own provider; worker subprocesses use the global one.
tracer_provider: trace.TracerProvider | None = None


def traced_child() -> str:
    with trace.get_tracer("tests.jobs", tracer_provider=tracer_provider).start_as_current_span("inside the job"):
        return "ok"


def pid() -> int:
    return os.getpid()


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
