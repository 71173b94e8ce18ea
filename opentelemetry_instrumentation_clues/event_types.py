"""The lifecycle event types: the one definition the instrumentation and the ``clues`` command share.

Standard library only, so the analysis commands need nothing else to know them.
"""

from __future__ import annotations

from enum import Enum

EVENT_NAME_PREFIX = "rq.job."  # an OTel log record's event_name is this and the event type


class EventType(str, Enum):
    SCHEDULED = "scheduled"  # extra: enqueue_at / enqueue_in, before the scheduler enqueues it
    DEFERRED = "deferred"  # extra: waits for the jobs it depends on, before it is enqueued
    ENQUEUED = "enqueued"
    DEQUEUED = "dequeued"
    PERFORM_STARTED = "perform_started"
    PERFORM_FINISHED = "perform_finished"
    FAILED = "failed"
    CANCELED = "canceled"  # extra: Job.cancel; the job will never run, its story ends here

    @property
    def event_name(self) -> str:
        """The OTel log record's event_name."""
        return EVENT_NAME_PREFIX + self.value


# The one list of event types the rest (the ``clues`` command included) derives from, in
# lifecycle order.
EVENT_TYPES: tuple[str, ...] = tuple(event_type.value for event_type in EventType)
# Events after which nothing more happens in an attempt (perform_finished, failed) or ever (canceled).
TERMINAL_EVENT_TYPES: tuple[str, ...] = ("perform_finished", "failed", "canceled")
# Where an event falls within one attempt, for ordering events that share a (whole-second) timestamp:
# a job is created (scheduled, deferred) or put on its queue, dequeued, performed, and ends.
LIFECYCLE_RANK: dict[str, int] = {
    "scheduled": 0,
    "deferred": 0,
    "enqueued": 0,
    "dequeued": 1,
    "perform_started": 2,
    "perform_finished": 3,
    "failed": 3,
    "canceled": 3,
}
