"""One attempt at running a job, from dequeue to its end: the one owner of its lifecycle.

The process that dequeues creates the attempt and its ``process`` span, and keeps
it on the worker object (one at a time, so nothing accumulates). The attempt moves
``dequeued → started → ended`` through its methods, each transition once: a second
``end`` (rq handling a returned Retry through its failure path, a killed horse whose
outcome was already reported) is refused, so every attempt has exactly one outcome.

With the forking ``Worker`` the attempt is created in the worker *before* the fork:
the horse inherits it (its span is the parent of the job's own spans) but never
publishes through it or ends it; it reports each transition over the attempt's
:class:`~.horse_channel.HorseChannel`, and the worker replays them here.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span

from opentelemetry_instrumentation_clues.instrumentation.horse_channel import HorseChannel
from opentelemetry_instrumentation_clues.telemetry.facts import Failure, JobFacts

_ATTR = "_clues_attempt"


class Stage(enum.Enum):
    DEQUEUED = "dequeued"
    STARTED = "perform_started"
    ENDED = "ended"


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: what perform_finished / failed say."""

    end_ns: int
    time_to_perform: float | None
    failure: Failure | None = None  # None: perform_finished
    will_retry: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)  # clues_metadata() set while the job ran
    pid: int | None = None  # where the outcome was known: the horse, or the worker that saw it die


@dataclass
class Attempt:
    job_id: str
    facts: JobFacts
    span: Span
    dequeued_ns: int | None = None
    stage: Stage = Stage.DEQUEUED
    perform_started_ns: int | None = None
    performer_pid: int | None = None  # where perform_job runs: the horse's pid with a forking Worker
    channel: HorseChannel | None = None  # forking Worker: the horse's reports to the worker
    horse_done_ns: int | None = None  # when the horse left perform_job (reported)
    flush_millis: int | None = None  # how long the horse may flush, as the worker decided before the fork
    span_ended: bool = False
    sync_failure: Failure | None = None  # Queue(is_async=False): what the job raised
    spawned: bool = False  # SpawnWorker: the horse is a fresh interpreter with a span of its own

    def start(self, started_ns: int, pid: int) -> bool:
        if self.stage is not Stage.DEQUEUED:
            return False
        self.stage, self.perform_started_ns, self.performer_pid = Stage.STARTED, started_ns, pid
        return True

    def end(self) -> bool:
        """Record that the attempt has its outcome; False when it already had one."""
        if self.stage is Stage.ENDED:
            return False
        self.stage = Stage.ENDED
        return True

    @property
    def performing_here(self) -> bool:
        return self.performer_pid == os.getpid()

    def end_span(self, end_ns: int | None = None) -> None:
        if not self.span_ended:
            self.span_ended = True
            self.span.end(end_time=end_ns)


def current(holder: Any, job_id: str | None) -> Attempt | None:
    attempt = getattr(holder, _ATTR, None)
    if isinstance(attempt, Attempt) and attempt.job_id == job_id:
        return attempt
    return None


def held_by(holder: Any) -> Attempt | None:
    """The attempt the worker holds now, whichever job it is."""
    attempt = getattr(holder, _ATTR, None)
    return attempt if isinstance(attempt, Attempt) else None


def remember(holder: Any, attempt: Attempt | None) -> None:
    # One attempt per worker at a time: the next dequeue replaces it, so nothing accumulates.
    setattr(holder, _ATTR, attempt)
