"""What a forked work horse reports to its worker, and how the worker replays it.

Reports, one JSON object per line on the attempt's :class:`~.horse_channel.HorseChannel`:

- ``started``: perform began (time, the horse's pid), before the job's code runs;
- ``end``: the outcome (time, time_to_perform, failure, will_retry, runtime metadata);
- ``m``: a metric measurement made in the horse (a job that enqueues jobs);
- ``log``: a log record clues made in the horse for another span (a job that enqueues jobs);
- ``done``: the horse leaves ``perform_job`` (whether it flushed, its own errors).

The worker publishes each as it arrives, with the horse's pid and the true
timestamps, so nothing of clues is exported from the horse.
"""

from __future__ import annotations

from typing import Any

from opentelemetry_instrumentation_clues.instrumentation.attempts import Attempt, Outcome
from opentelemetry_instrumentation_clues.instrumentation.horse_channel import HorseChannel, ReportNotSent
from opentelemetry_instrumentation_clues.instrumentation.lifecycle import Lifecycle
from opentelemetry_instrumentation_clues.runtime.flush import FlushBudget
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.telemetry.emitter import Telemetry
from opentelemetry_instrumentation_clues.telemetry.facts import Failure
from opentelemetry_instrumentation_clues.values.converter import cut_middle, cut_text


class HorseReporter:
    """In the horse: sends reports; once one cannot be sent, the horse publishes for itself."""

    def __init__(self, channel: HorseChannel) -> None:
        self.channel = channel

    def send(self, report: dict[str, Any]) -> bool:
        """Whether the worker will publish it; False means: publish it here."""
        if self.channel.broken:
            return False
        try:
            self.channel.send(report)
        except ReportNotSent as exc:
            errors.record(Place.HORSE_HANDOFF, exc)
            return False
        return True

    def started(self, attempt: Attempt) -> bool:
        return self.send({"t": "started", "ns": attempt.perform_started_ns, "pid": attempt.performer_pid})

    def ended(self, attempt: Attempt, outcome: Outcome) -> bool:
        failure, facts = outcome.failure, attempt.facts
        if failure is not None:  # bounded here, so a huge message never fills the pipe
            message = cut_text(failure.message, facts.value_limit)
            stacktrace = cut_middle(failure.stacktrace, facts.stacktrace_limit)
            failure = Failure(failure.type, message, stacktrace, failure.raised)
        return self.send(
            {
                "t": "end",
                "ns": outcome.end_ns,
                "ttp": outcome.time_to_perform,
                "f": None if failure is None else [failure.type, failure.message, failure.stacktrace, failure.raised],
                "retry": outcome.will_retry,
                "meta": outcome.metadata,
                "pid": outcome.pid,
            }
        )

    def done(self, end_ns: int, flushed: bool | None) -> bool:
        return self.send({"t": "done", "ns": end_ns, "flushed": flushed, "errors": errors.take_held()})


class ReportReplay:
    """In the worker: publishes what one attempt's horse reports, as it arrives."""

    def __init__(self, lifecycle: Lifecycle, telemetry: Telemetry, flush_budget: FlushBudget) -> None:
        self.lifecycle = lifecycle
        self.telemetry = telemetry
        self.flush_budget = flush_budget

    def deliver(self, attempt: Attempt, report: dict[str, Any] | ValueError) -> None:
        try:
            if isinstance(report, ValueError):
                raise report
            kind = report["t"]
            if kind == "started":
                self.lifecycle.started(attempt, int(report["ns"]), int(report["pid"]))
            elif kind == "end":
                self.lifecycle.ended(attempt, _outcome(report))
            elif kind == "m":
                self.telemetry.record_forwarded(report)
            elif kind == "log":
                self.telemetry.emit_forwarded(report)
            elif kind == "done":
                attempt.horse_done_ns = int(report["ns"])
                if report.get("flushed") is not None:
                    self.flush_budget.update(bool(report["flushed"]))
                errors.record_from_horse(report.get("errors") or {})
        except Exception as exc:  # one bad report costs that report only
            errors.record(Place.HORSE_REPLAY, exc)


def _outcome(report: dict[str, Any]) -> Outcome:
    failure = report.get("f")
    ttp = report.get("ttp")
    return Outcome(
        end_ns=int(report["ns"]),
        time_to_perform=None if ttp is None else float(ttp),
        failure=None if failure is None else _failure(failure),
        will_retry=bool(report.get("retry")),
        metadata=dict(report.get("meta") or {}),
        pid=None if report.get("pid") is None else int(report["pid"]),
    )


def _failure(reported: list[Any]) -> Failure:
    type_name, message, stacktrace, raised = reported
    return Failure(str(type_name), str(message), str(stacktrace), bool(raised))
