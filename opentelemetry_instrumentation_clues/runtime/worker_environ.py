"""Keep rq's per-job environment values from piling up in a forking worker.

rq's ``Worker.fork_work_horse`` runs ``os.environ['RQ_JOB_ID'] = job.id`` after the
fork, in the horse and in the worker itself. Assigning to ``os.environ`` calls C
``setenv``, and glibc never frees a value it has put in the environment (a pointer
from ``getenv`` may still use it): every job id stays in the worker for good, about
100 bytes per job, and these small permanent strings, scattered over the heap, keep
the memory freed around them from being reused. An instrumented worker allocates and
frees more per job than a plain one, so its RSS grew about 400 bytes per job that way
(docs/performance.md, "Worker RSS over long runs").

While the worker forks a horse, the worker's own assignments of per-job values reach
only Python's ``os.environ`` (which Python code and ``os.posix_spawn(..., os.environ)``
read); the horse, where the job runs, sets them as usual, so the job, C code in it and
programs it starts see them exactly as under plain rq. Only C-level readers in the
worker process itself (``getenv``, a program it starts without ``env=``) stop seeing
the id of the job it last forked for.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry_instrumentation_clues.runtime import at_fork

# Set per job by rq's forking Worker in the worker process (RQ_WORKER_ID is one value per
# worker: glibc reuses it, nothing piles up).
PER_JOB_NAMES = frozenset({"RQ_JOB_ID", "RQ_EXECUTION_ID"})

_forking = threading.local()  # .pid: the worker process forking in this thread, else None
_real_putenv: Callable[[Any, Any], None] = os.putenv  # replaced by what os.putenv is at install()


def install() -> None:
    """Route ``os.environ`` assignments through the filter (``os._Environ`` calls ``os.putenv``)."""
    global _real_putenv
    if os.putenv is _filtered_putenv:
        return
    _real_putenv = os.putenv
    os.putenv = _filtered_putenv
    at_fork.register("worker environment", after_in_child=_copy_into_horse_environ)


def uninstall() -> None:
    if os.putenv is _filtered_putenv:
        os.putenv = _real_putenv


@contextmanager
def per_job_values_kept_in_python() -> Iterator[None]:
    """Around ``fork_work_horse``: in this process and thread, per-job values skip C ``setenv``."""
    _forking.pid = os.getpid()
    try:
        yield
    finally:
        _forking.pid = None


def _filtered_putenv(name: Any, value: Any) -> None:
    if getattr(_forking, "pid", None) == os.getpid() and _text(name) in PER_JOB_NAMES:
        return
    _real_putenv(name, value)


def _copy_into_horse_environ() -> None:
    """In a horse forked inside the window: give its C environment what Python's holds.

    rq sets the values again after the fork anyway; this keeps the horse right even
    if a version sets them before forking.
    """
    if getattr(_forking, "pid", None) is None:
        return
    _forking.pid = None
    for name in PER_JOB_NAMES:
        value = os.environ.get(name)
        if value is not None:
            _real_putenv(name, value)


def _text(name: Any) -> str:
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else str(name)
