"""Job functions the tests enqueue (importable by worker subprocesses)."""

from __future__ import annotations

import os
import time

from opentelemetry import trace


def add(a: int, b: int, **labels: object) -> int:
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


def worker_children() -> list[str]:
    """The names (``comm``) of the living children of the worker that forked this horse."""
    worker, names = os.getppid(), []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                head, tail = stat.read().rsplit(")", 1)
        except (OSError, ValueError):
            continue  # not a process, or gone
        state, parent = tail.split()[:2]
        if state != "Z" and int(parent) == worker:
            names.append(head.split("(", 1)[1])
    return sorted(names)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def record_rows(rows: int) -> int:
    from opentelemetry_instrumentation_clues import clues_metadata

    clues_metadata()["rows"] = rows
    return rows


def fail_after_noting(reason: str) -> None:
    from opentelemetry_instrumentation_clues import clues_metadata

    clues_metadata()["reason"] = reason
    raise RuntimeError(reason)


def tag_customer(queue: str, item: dict) -> None:
    """An item preprocessor (seed style): adds metadata before the job is enqueued."""
    item["clues_metadata"]["customer_id"] = 42
    item["clues_metadata"]["queue_seen"] = queue
    item["clues_metadata"]["first_arg"] = item["args"][0] if item["args"] else None


def retry_until_exhausted() -> object:
    """Returns rq's Retry (rq >= 2.1): the attempt fails and rq runs it again while retries remain."""
    from rq import Retry

    return Retry(max=1)


def kill_own_horse() -> None:
    """Dies the way an OOM kill looks: SIGKILL, no exception, no clean-up."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def on_success_span(job, connection, result, *args, **kwargs) -> None:
    with trace.get_tracer("tests.jobs", tracer_provider=tracer_provider).start_as_current_span("on_success callback"):
        pass


def on_failure_span(job, connection, type, value, traceback) -> None:
    with trace.get_tracer("tests.jobs", tracer_provider=tracer_provider).start_as_current_span("on_failure callback"):
        pass


def on_stopped_span(job, connection) -> None:
    with trace.get_tracer("tests.jobs").start_as_current_span("on_stopped callback"):
        pass


def sleep_noting_pid(seconds: float) -> float:
    """Sleeps, after saving its horse's pid in job.meta (so a test can kill it)."""
    from rq import get_current_job

    job = get_current_job()
    job.meta["horse_pid"] = os.getpid()
    job.save_meta()
    time.sleep(seconds)
    return seconds


def c_environ_job_id() -> str | None:
    """RQ_JOB_ID as C code and child programs see it in the work horse (not Python's copy)."""
    import ctypes

    getenv = ctypes.CDLL(None).getenv
    getenv.restype = ctypes.c_char_p
    value = getenv(b"RQ_JOB_ID")
    return value.decode() if value is not None else None


def enqueue_jobs(count: int, queue_name: str) -> int:
    """Fans out: enqueues ``count`` jobs onto ``queue_name`` from inside the job (its horse)."""
    from rq import Queue, get_current_job

    queue = Queue(queue_name, connection=get_current_job().connection)
    for i in range(count):
        queue.enqueue(add, i, 1)
    return count
