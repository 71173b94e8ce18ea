"""Metadata a running job adds about itself (the seed's runtime ``clues_metadata``)."""

from __future__ import annotations

import uuid
from typing import Any

from rq import get_current_job

from opentelemetry_instrumentation_clues.instrumentation import job_context


def clues_metadata(job: Any = None) -> dict[str, Any]:
    """The mutable metadata of the running job (or of ``job``).

    Keys set here appear on the job's ``perform_finished`` / ``failed`` event and,
    when rq saves the job again (a retry), on every later attempt::

        from opentelemetry_instrumentation_clues import clues_metadata

        def import_invoices(account_id):
            clues_metadata()["invoices"] = len(rows)
    """
    job = job if job is not None else get_current_job()
    if job is None:
        raise RuntimeError("clues_metadata() is for code running inside an RQ job (or pass job=)")
    clues = job_context.read(job)
    if clues is None:  # not enqueued with clues: start its data now (kept in memory)
        clues = job_context.JobClues(event_hash=uuid.uuid4().hex)
        job_context.write(job, clues)
    return job.meta[job_context.META_KEY]["metadata"]
