"""One attempt at running a job: from dequeue to its end, across the fork.

The worker that dequeues creates the attempt (and its ``process`` span) and
keeps it on the worker object; a forked work horse inherits that object, adds
its perform events and ends the span. When the horse dies before it can (killed,
stopped, OOM), rq handles the failure in the parent, which ends its own copy.
Only one of the two ever ends a given attempt's span.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from .events import Failure, JobFacts
from .metrics import HorsePipe

_ATTR = "_clues_attempt"


@dataclass
class Attempt:
    job_id: str
    facts: JobFacts
    span: Span
    dequeued_ns: int | None = None
    perform_started_ns: int | None = None
    performing_pid: int | None = None  # set only in the process that runs perform_job
    ended: bool = False
    pipe: HorsePipe | None = None  # forking Worker: measurements from the horse to the parent
    terminal_published: bool = False  # perform_finished or failed, once per attempt
    # Set while rq handles a returned Retry, which on some versions goes through handle_job_failure.
    retry_failure: Failure | None = None
    retry_will_retry: bool = False
    sync_failure: Failure | None = None  # Queue(is_async=False): what the job raised
    spawned: bool = False  # SpawnWorker: the horse is a fresh interpreter with a span of its own

    @property
    def performing_here(self) -> bool:
        return self.performing_pid == os.getpid()

    def end(self, end_ns: int | None = None) -> None:
        if not self.ended:
            self.ended = True
            self.span.end(end_time=end_ns)


def current(worker: Any, job_id: str | None) -> Attempt | None:
    attempt = getattr(worker, _ATTR, None)
    if isinstance(attempt, Attempt) and attempt.job_id == job_id:
        return attempt
    return None


def remember(worker: Any, attempt: Attempt | None) -> None:
    # One attempt per worker at a time: the next dequeue replaces it, so nothing accumulates.
    setattr(worker, _ATTR, attempt)
