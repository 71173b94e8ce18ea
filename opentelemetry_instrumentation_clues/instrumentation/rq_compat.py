"""What differs between the rq versions we support (2.6 … 3.x), in one place.

rq 2.7 moved the perform path from ``Worker`` to ``BaseWorker`` and rq 3.0
added an ``execution`` argument to several worker methods, so wrappers never
rely on a fixed signature: they find ``job`` and ``queue`` by position or by
keyword, and patches are applied to whichever class in the MRO owns a method.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry
from rq.timeouts import BaseTimeoutException
from rq.worker import SimpleWorker, SpawnWorker, Worker

# Exceptions rq raises through other code to steer it (a job's timeout, the horse
# monitor's wake-up): clues' error guards must let them pass.
RQ_CONTROL_FLOW: tuple[type[BaseException], ...] = (BaseTimeoutException,)


def owner_of(cls: type, name: str) -> type:
    """The class in ``cls``'s MRO that defines ``name`` (the one to patch)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return klass
    raise AttributeError(f"{cls.__name__} has no attribute {name!r}")


def arg(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str) -> Any:
    """An argument passed either by position or by keyword (``None`` when absent)."""
    if name in kwargs:
        return kwargs[name]
    if len(args) > position:
        return args[position]
    return None


def as_epoch_ns(moment: datetime | None) -> int | None:
    """rq timestamps are tz-aware UTC from 2.2 on; treat naive ones as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1_000_000_000)


def queue_is_async(queue: Queue) -> bool:
    return bool(getattr(queue, "_is_async", getattr(queue, "is_async", True)))


def worker_is_horse(worker: Any) -> bool:
    """True inside a forked work horse (its memory is thrown away by ``os._exit``)."""
    return bool(getattr(worker, "_is_horse", False))


def worker_forks(worker: Any) -> bool:
    """A Worker that runs each job in a forked (or spawned) horse; SimpleWorker runs them itself."""
    return isinstance(worker, Worker) and not isinstance(worker, SimpleWorker)


def stopped_job_id(worker: Any) -> str | None:
    return getattr(worker, "_stopped_job_id", None)


__all__ = [
    "RQ_CONTROL_FLOW",
    "FailedJobRegistry",
    "Job",
    "Queue",
    "SpawnWorker",
    "Worker",
    "arg",
    "as_epoch_ns",
    "owner_of",
    "queue_is_async",
    "worker_is_horse",
]
