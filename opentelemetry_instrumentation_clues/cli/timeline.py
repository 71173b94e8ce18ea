"""``clues trace``: one job's events in order, with the time between them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from opentelemetry_instrumentation_clues.cli.event_log import Event, format_duration
from opentelemetry_instrumentation_clues.event_types import LIFECYCLE_RANK

#: Events kept for one job (a runaway retry loop must not exhaust memory); the rest are counted.
MAX_EVENTS = 10_000

# After the attempt that ended: rq putting the job back (retry, requeue), or canceling it.
_RETRY_RANK = {"scheduled": 4, "enqueued": 5, "canceled": 6}


class Timeline:
    """Collects the events of one ``event_hash`` (compared case-insensitively)."""

    def __init__(self, event_hash: str) -> None:
        self.event_hash = event_hash.strip().lower()
        self.events: list[tuple[int, Event]] = []
        self.dropped = 0
        self._seq = 0

    def add(self, event: Event) -> None:
        if event.event_hash.lower() != self.event_hash:
            return
        self._seq += 1
        if len(self.events) >= MAX_EVENTS:
            self.dropped += 1
            return
        self.events.append((self._seq, event))

    def ordered(self) -> list[Event]:
        """Events by timestamp; ties (timestamps are whole seconds) broken by attempt, then:

        * events that carry ``metadata.attempt`` (all that clues writes): the lifecycle order
          within the attempt — dequeued, perform_started, perform_finished/failed, then the
          re-enqueue (``enqueued``/``scheduled`` with attempt >= 1: rq retrying the failed attempt),
          then reading order. A log written by several processes (worker, work horses, scheduler,
          producers) is ordered per process, not globally, so line order alone cannot be trusted;
        * events without ``attempt``, all from one input: the order they were written in;
        * events without ``attempt`` from several inputs (e.g. a producer's log and a worker's log):
          the lifecycle order (enqueued < dequeued < perform_started < perform_finished/failed),
          then reading order.
        """
        single_source = len({event.source for _, event in self.events}) <= 1

        def key(item: tuple[int, Event]) -> tuple[Any, ...]:
            seq, event = item
            attempt = event.attempt
            if attempt is None and single_source:
                return (event.timestamp, 0, 0, seq)
            return (event.timestamp, attempt or 0, _rank(event.event_type, attempt), seq)

        return [event for _, event in sorted(self.events, key=key)]


def _rank(event_type: str, attempt: int | None) -> int:
    if event_type in _RETRY_RANK and attempt:
        return _RETRY_RANK[event_type]  # after attempt `attempt` ended: put back in the queue, or canceled
    return LIFECYCLE_RANK.get(event_type, 2)


def _detail(event: Event) -> str:
    if event.event_type in ("enqueued", "scheduled") and event.attempt:
        return f"retry: back in the queue after attempt {event.attempt} failed"
    if event.event_type == "dequeued":
        return f"time_in_queue={format_duration(event.time_in_queue)}"
    if event.event_type == "perform_finished":
        return f"time_to_perform={format_duration(event.time_to_perform)}"
    if event.event_type == "failed":
        message = event.metadata.get("message", "")
        retry = " (will retry)" if event.metadata.get("will_retry") is True else ""
        return (
            f"time_to_perform={format_duration(event.time_to_perform)} "
            f"{event.metadata.get('exception', '')}: {message}{retry}"
        )
    return ""


def render_table(events: list[Event], show_backtrace: bool = False) -> str:
    first = events[0]
    lines = [
        f"event_hash:   {first.event_hash}",
        f"queue:        {first.queue}",
        f"worker_class: {first.worker_class}",
        f"args:         {json.dumps(first.args)}",
    ]
    kwargs = first.metadata.get("kwargs")
    if kwargs:
        lines.append(f"kwargs:       {json.dumps(kwargs)}")
    job_ids = list(dict.fromkeys(str(e.metadata["job_id"]) for e in events if e.metadata.get("job_id")))
    if job_ids:  # rq's job id (clues writes it on every event): look the job up in rq with it
        lines.append(f"job_id:       {', '.join(job_ids)}")
    header = ["#", "timestamp", "+since prev", "+since first", "event", "attempt", "host:pid", "detail"]
    rows = []
    previous = first.timestamp
    for index, event in enumerate(events, 1):
        since_prev = (event.timestamp - previous).total_seconds()
        since_first = (event.timestamp - first.timestamp).total_seconds()
        previous = event.timestamp
        rows.append(
            [
                str(index),
                event.timestamp_text,
                "-" if index == 1 else f"+{format_duration(since_prev)}",
                "-" if index == 1 else f"+{format_duration(since_first)}",
                event.event_type,
                str(event.attempt) if event.attempt is not None else "-",
                f"{event.hostname}:{event.process}",
                _detail(event),
            ]
        )
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    lines.append("")
    lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(header)).rstrip())
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    last = events[-1]
    outcome = {"perform_finished": "succeeded", "failed": "failed", "canceled": "canceled"}.get(
        last.event_type, "not finished"
    )
    tiq = sum(e.time_in_queue or 0.0 for e in events)
    ttp = sum(e.time_to_perform or 0.0 for e in events)
    lines.append("")
    lines.append(
        f"outcome: {outcome}; attempts: {sum(1 for e in events if e.event_type == 'perform_started')}; "
        f"total time_in_queue: {format_duration(tiq)}; total time_to_perform: {format_duration(ttp)}"
    )
    if show_backtrace:
        for event in events:
            if event.event_type == "failed" and event.metadata.get("backtrace"):
                lines.append("")
                lines.append(f"backtrace of the failure at {event.timestamp_text}:")
                lines += [f"  {frame.rstrip()}" for frame in event.metadata["backtrace"]]
    return "\n".join(lines)


def as_dicts(events: Iterable[Event]) -> list[dict[str, Any]]:
    out = []
    previous = None
    for event in events:
        item = json.loads(event.line)
        item["source"] = f"{event.source}:{event.lineno}"
        item["seconds_since_previous"] = None if previous is None else (event.timestamp - previous).total_seconds()
        previous = event.timestamp
        out.append(item)
    return out
