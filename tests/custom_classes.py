"""Custom rq classes, as users pass them with `rq worker -w/-j/--queue-class`."""

from __future__ import annotations

from rq import Queue, Worker
from rq.job import Job


class AuditedJob(Job):
    pass


class AuditedQueue(Queue):
    job_class = AuditedJob


class AuditedWorker(Worker):
    def perform_job(self, job, queue, *args, **kwargs):
        return super().perform_job(job, queue, *args, **kwargs)
