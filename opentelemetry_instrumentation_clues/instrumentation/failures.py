"""Name the failure of an attempt, including the ones that never raise in the job.

Those get clues' own names, as ``error.type`` only (``Failure.raised`` is False)."""

from __future__ import annotations

import re
import sys
from typing import Any

from opentelemetry_instrumentation_clues.telemetry.facts import Failure

HORSE_KILLED = "WorkHorseKilled"
JOB_STOPPED = "JobStopped"
RETRY_RETURNED = "RetryReturned"
WORKER_SHUTDOWN = "WorkerShutdown"  # a cold shutdown took the horse down with the worker
UNKNOWN_FAILURE = "UnknownFailure"  # rq reported a failure clues cannot name

_SIGNAL = re.compile(r"\(signal (\d+)\)")


def current_failure(exc_string: str | None, stopped: bool) -> Failure:
    """The failure rq is handling now.

    Inside the work horse, ``handle_job_failure`` runs in the ``except`` block
    of ``perform_job``, so the job's exception is still active. In the worker
    parent (horse killed, job stopped) there is none: the kind comes from rq's
    own exc_string.
    """
    exc_type, exc, tb = sys.exc_info()
    if exc_type is not None:
        return Failure.from_exc_info(exc_type, exc, tb)
    text = exc_string or ""
    if stopped:
        return Failure(JOB_STOPPED, "job stopped by request (send_stop_job_command)", text, raised=False)
    if "terminated unexpectedly" in text:
        match = _SIGNAL.search(text)
        suffix = f" by signal {match.group(1)}" if match else ""
        return Failure(HORSE_KILLED, f"work horse terminated unexpectedly{suffix}", text, raised=False)
    return Failure(UNKNOWN_FAILURE, text.strip().splitlines()[-1] if text.strip() else "", text, raised=False)


def job_should_retry(job: Any) -> bool:
    """What rq's handle_job_failure is about to decide (rq 2.x and 3.x)."""
    retries_left = getattr(job, "retries_left", None)
    return retries_left is not None and retries_left > 0


def returned_retry_will_run(job: Any, retry: Any) -> bool:
    """rq re-runs a job that returned ``Retry`` until its number_of_retries reaches retry.max."""
    done = getattr(job, "number_of_retries", None) or 0
    return not (done and done >= getattr(retry, "max", 0))


def retry_failure(retry: Any) -> Failure:
    return Failure(RETRY_RETURNED, f"job returned {retry!r}", "", raised=False)
