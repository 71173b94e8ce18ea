"""A forking rq Worker that samples its own C heap (glibc mallinfo2) every few jobs.

``rq worker -w tests.malloc_probe.MallocProbeWorker``; CLUES_TEST_MALLOC_SAMPLES names
the file that gets one line per sample: jobs done, bytes the C heap holds in use.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

from rq.worker import Worker

EVERY = 100


# struct mallinfo2, in order: uordblks is the bytes malloc has handed out and not had back.
_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


_mallinfo2 = ctypes.CDLL(None).mallinfo2  # glibc 2.33+
_mallinfo2.restype = _MallInfo2


def heap_in_use() -> int:
    return int(_mallinfo2().uordblks)


def _empty_export_queues() -> None:
    from opentelemetry import trace
    from opentelemetry._logs import get_logger_provider

    for provider in (trace.get_tracer_provider(), get_logger_provider()):
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush()


class MallocProbeWorker(Worker):
    jobs_done = 0

    def execute_job(self, job: Any, queue: Any) -> Any:
        result = super().execute_job(job, queue)
        MallocProbeWorker.jobs_done += 1
        if MallocProbeWorker.jobs_done % EVERY == 0:
            _empty_export_queues()  # the worker publishes its horses' events: what waits for export is not growth
            with open(os.environ["CLUES_TEST_MALLOC_SAMPLES"], "a") as samples:
                samples.write(f"{MallocProbeWorker.jobs_done} {heap_in_use()}\n")
        return result
