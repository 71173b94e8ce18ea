"""``clues stats``: per (queue, worker_class) job counts, failure rate, latency percentiles, SLA share.

Definitions (also in ``clues stats --help`` and docs/cli.md):

* **job** — a distinct ``event_hash`` with at least one terminal event (``perform_finished`` or
  ``failed``). Jobs still waiting or running (no terminal event yet) are not counted, nor are jobs
  canceled before they ran (``canceled`` ends a job's story without a run to count).
* **outcome** — the job's last terminal event in reading order (inputs in the order given, lines in
  file order): a job that failed, was retried and then finished counts as one succeeded job
  (and as *retried*). **failures** are jobs whose outcome is ``failed``; **failure rate** is
  failures / jobs.
* **time_in_queue** — one sample per ``dequeued`` event (each attempt of a retried job waits once);
  **time_to_perform** — one sample per ``perform_finished``/``failed`` event (each attempt).
* **SLA share** — the share of ``dequeued`` events whose ``time_in_queue`` is <= ``--sla``.

Memory is flat in the size of the input: percentiles come from a fixed log-bucket histogram
(:class:`LogHistogram`, relative error <= 1%), and per-job state is kept only for jobs whose latest
terminal event is ``failed`` (they may still be retried); a job is forgotten as soon as it finishes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry_instrumentation_clues.cli.event_log import Event, format_duration

PERCENTILES = (50, 95, 99)


class LogHistogram:
    """Fixed logarithmic buckets: any quantile within ``RELATIVE_ERROR`` (1%) of the exact value.

    A value ``v`` in ``[MIN_VALUE, MAX_VALUE]`` falls in bucket ``i = ceil(log(v) / log(gamma))``
    with ``gamma = (1 + a) / (1 - a)``, ``a = 0.01``; the bucket ``(gamma**(i-1), gamma**i]`` is
    reported as ``2 * gamma**i / (gamma + 1)``, which is within ``a`` (relative) of every value in it.
    Values below ``MIN_VALUE`` (1 µs, including 0) are reported as 0; values above ``MAX_VALUE``
    (about 116 days) are clamped to it. The quantile is the nearest-rank one: the smallest sample
    ``x`` such that at least ``q``% of the samples are <= ``x``. At most ~1,600 buckets per histogram.
    """

    RELATIVE_ERROR = 0.01
    MIN_VALUE = 1e-6
    MAX_VALUE = 1e7
    _GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
    _LOG_GAMMA = math.log(_GAMMA)

    __slots__ = ("buckets", "count", "max", "min", "sum", "zero")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        if value < self.MIN_VALUE:
            self.zero += 1
            return
        value = min(value, self.MAX_VALUE)
        index = math.ceil(math.log(value) / self._LOG_GAMMA)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def merge(self, other: LogHistogram) -> None:
        self.count += other.count
        self.sum += other.sum
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.zero += other.zero
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n

    def quantile(self, q: float) -> float | None:
        """The nearest-rank ``q``-th percentile (0 < q <= 100), or None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100.0 * self.count))
        if rank <= self.zero:
            return 0.0
        seen = self.zero
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                estimate = 2 * self._GAMMA**index / (self._GAMMA + 1)
                # The exact answer lies within [min, max]: clamping only reduces the error.
                return min(max(estimate, self.min), self.max)
        return self.max  # pragma: no cover - unreachable: the counts add up to self.count

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"count": self.count}
        for p in PERCENTILES:
            out[f"p{p}"] = self.quantile(p)
        out["max"] = self.max if self.count else None
        out["mean"] = self.sum / self.count if self.count else None
        return out


@dataclass
class GroupStats:
    queue: str
    worker_class: str
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    events: dict[str, int] = field(default_factory=dict)
    time_in_queue: LogHistogram = field(default_factory=LogHistogram)
    time_to_perform: LogHistogram = field(default_factory=LogHistogram)
    within_sla: int = 0

    @property
    def jobs(self) -> int:
        return self.succeeded + self.failed

    def merge(self, other: GroupStats) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        self.retried += other.retried
        for event_type, n in other.events.items():
            self.events[event_type] = self.events.get(event_type, 0) + n
        self.time_in_queue.merge(other.time_in_queue)
        self.time_to_perform.merge(other.time_to_perform)
        self.within_sla += other.within_sla

    def as_dict(self, sla: float) -> dict[str, Any]:
        dequeues = self.time_in_queue.count
        return {
            "queue": self.queue,
            "worker_class": self.worker_class,
            "jobs": self.jobs,
            "succeeded": self.succeeded,
            "failures": self.failed,
            "failure_rate": self.failed / self.jobs if self.jobs else None,
            "retried_jobs": self.retried,
            "events": dict(sorted(self.events.items())),
            "time_in_queue": self.time_in_queue.summary(),
            "time_to_perform": self.time_to_perform.summary(),
            "sla": {
                "threshold_seconds": sla,
                "dequeues": dequeues,
                "within": self.within_sla,
                "share": self.within_sla / dequeues if dequeues else None,
            },
        }


@dataclass
class _Pending:
    """A job whose latest terminal event is ``failed`` (it may still be retried)."""

    key: tuple[str, str]
    retried: bool = False


class StatsCollector:
    """Consumes events one by one; memory stays bounded (see the module docstring)."""

    def __init__(self, sla: float) -> None:
        self.sla = sla
        self.groups: dict[tuple[str, str], GroupStats] = {}
        self.pending_failed: dict[str, _Pending] = {}
        self.events = 0

    def _group(self, key: tuple[str, str]) -> GroupStats:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = GroupStats(*key)
        return group

    def add(self, event: Event) -> None:
        self.events += 1
        key = (event.queue, event.worker_class)
        group = self._group(key)
        group.events[event.event_type] = group.events.get(event.event_type, 0) + 1
        if event.event_type == "dequeued":
            tiq = event.time_in_queue
            if tiq is not None:
                group.time_in_queue.add(tiq)
                if tiq <= self.sla:
                    group.within_sla += 1
        elif event.event_type == "perform_finished":
            ttp = event.time_to_perform
            if ttp is not None:
                group.time_to_perform.add(ttp)
            pending = self.pending_failed.pop(event.event_hash, None)
            if pending is not None:
                # Failed before, finished now: one job, succeeded after a retry.
                target = self._group(pending.key)
                target.retried += 1
                group_for_job = target
            else:
                group_for_job = group
            group_for_job.succeeded += 1
        elif event.event_type == "failed":
            ttp = event.time_to_perform
            if ttp is not None:
                group.time_to_perform.add(ttp)
            pending = self.pending_failed.get(event.event_hash)
            if pending is None:
                self.pending_failed[event.event_hash] = _Pending(key)
            else:
                pending.retried = True

    def finish(self) -> list[GroupStats]:
        """Settle the jobs still pending as failures; return the groups sorted by (queue, worker_class)."""
        for pending in self.pending_failed.values():
            group = self._group(pending.key)
            group.failed += 1
            if pending.retried:
                group.retried += 1
        self.pending_failed.clear()
        return [self.groups[key] for key in sorted(self.groups)]


def totals(groups: Iterable[GroupStats]) -> GroupStats:
    total = GroupStats("TOTAL", "")
    for group in groups:
        total.merge(group)
    return total


def _pct(numerator: int, denominator: int) -> str:
    return f"{100.0 * numerator / denominator:.1f}%" if denominator else "-"


def render_table(groups: list[GroupStats], sla: float) -> str:
    """The human table, one row per group and a TOTAL row."""
    sla_text = format_duration(sla)
    header = [
        "queue",
        "worker_class",
        "jobs",
        "failed",
        "fail%",
        "tiq p50",
        "tiq p95",
        "tiq p99",
        "ttp p50",
        "ttp p95",
        "ttp p99",
        f"tiq<={sla_text}",
    ]
    rows: list[list[str]] = []
    total = totals(groups)
    for group in [*groups, total]:
        tiq, ttp = group.time_in_queue, group.time_to_perform
        rows.append(
            [
                group.queue,
                group.worker_class,
                str(group.jobs),
                str(group.failed),
                _pct(group.failed, group.jobs),
                *(format_duration(tiq.quantile(p)) for p in PERCENTILES),
                *(format_duration(ttp.quantile(p)) for p in PERCENTILES),
                _pct(group.within_sla, tiq.count),
            ]
        )
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    left = {0, 1}

    def fmt(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(widths[i]) if i in left else cell.rjust(widths[i]) for i, cell in enumerate(cells)
        ).rstrip()

    lines = [fmt(header)]
    lines += [fmt(row) for row in rows[:-1]]
    lines.append("  ".join("-" * w for w in widths))
    lines.append(fmt(rows[-1]))
    return "\n".join(lines)
