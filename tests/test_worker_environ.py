"""rq's per-job environment values don't pile up in an instrumented forking worker.

rq's forking Worker runs ``os.environ['RQ_JOB_ID'] = job.id`` in the worker for every
job, and glibc keeps every value ever set with ``setenv``. clues keeps those values in
Python's ``os.environ`` only, in the worker; the horse still has them in its C
environment (opentelemetry_instrumentation_clues/runtime/worker_environ.py).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue
from rq.job import Job

from opentelemetry_instrumentation_clues.runtime import worker_environ
from tests.processes import env_with, instrumented, rq_worker_cmd, run

JOBS = 3000
# Jobs done at the samples each window takes its lowest reading from, after the worker's warm-up.
EARLY = range(1500, 1801)
LATE = range(JOBS - 300, JOBS + 1)
JOBS_BETWEEN = (LATE.start + LATE.stop) // 2 - (EARLY.start + EARLY.stop) // 2


def c_getenv(name: str) -> str | None:
    getenv = ctypes.CDLL(None).getenv
    getenv.restype = ctypes.c_char_p
    value = getenv(name.encode())
    return value.decode() if value is not None else None


@pytest.fixture
def filter_installed() -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in ("RQ_JOB_ID", "CLUES_TEST_OTHER")}
    worker_environ.install()
    try:
        yield
    finally:
        worker_environ.uninstall()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_while_forking_per_job_values_reach_only_pythons_environ(filter_installed):
    os.environ["RQ_JOB_ID"] = "before"
    with worker_environ.per_job_values_kept_in_python():
        os.environ["RQ_JOB_ID"] = "inside"
        os.environ["CLUES_TEST_OTHER"] = "any other name reaches C"

    assert os.environ["RQ_JOB_ID"] == "inside"
    assert c_getenv("RQ_JOB_ID") == "before"
    assert c_getenv("CLUES_TEST_OTHER") == "any other name reaches C"
    os.environ["RQ_JOB_ID"] = "after"
    assert c_getenv("RQ_JOB_ID") == "after"


def test_a_horse_forked_in_the_window_has_the_values_in_its_c_environment(filter_installed):
    read_fd, write_fd = os.pipe()
    with worker_environ.per_job_values_kept_in_python():
        os.environ["RQ_JOB_ID"] = "for-the-horse"
        pid = os.fork()
        if pid == 0:
            try:
                os.write(write_fd, (c_getenv("RQ_JOB_ID") or "unset").encode())
            finally:
                os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    assert os.read(read_fd, 100) == b"for-the-horse"
    os.close(read_fd)
    assert c_getenv("RQ_JOB_ID") != "for-the-horse"


def test_uninstall_gives_back_os_putenv():
    original = os.putenv
    worker_environ.install()
    assert os.putenv is not original
    worker_environ.uninstall()
    assert os.putenv is original


def heap_growth_per_job(samples_file: Path) -> float:
    """C heap bytes in use gained per job, lowest reading late minus lowest early
    (an export in flight holds its buffers for a moment)."""
    samples = [tuple(map(int, line.split())) for line in samples_file.read_text().splitlines()]
    early = min(size for done, size in samples if done in EARLY)
    late = min(size for done, size in samples if done in LATE)
    return (late - early) / JOBS_BETWEEN


def run_probed_worker(
    redis_url: str, queue: str, tmp_path: Path, extra_env: dict[str, str], *, instrument: bool
) -> Path:
    samples = tmp_path / f"{queue}.samples"
    worker = rq_worker_cmd(redis_url, queue, "-w", "tests.malloc_probe.MallocProbeWorker")
    env = env_with({**extra_env, "CLUES_TEST_MALLOC_SAMPLES": str(samples)})
    run(instrumented(*worker) if instrument else worker, env, timeout=600)
    return samples


def enqueue(redis_url: str, queue: str) -> list[str]:
    connection = Redis.from_url(redis_url)
    jobs = Queue(queue, connection=connection)
    return [jobs.enqueue("tests.jobs.c_environ_job_id").id for _ in range(JOBS)]


@pytest.mark.slow  # two workers x 3000 forked jobs: run once, on the newest rq
@pytest.mark.timeout(900)
def test_instrumented_forking_worker_keeps_no_job_ids_in_its_heap(redis_url, tmp_path):
    # The control: plain rq's worker keeps every job id it has set with setenv.
    enqueue(redis_url, "plain")
    plain = heap_growth_per_job(run_probed_worker(redis_url, "plain", tmp_path, {}, instrument=False))
    assert plain > 60, f"plain rq no longer grows per job ({plain:.1f} B/job): is worker_environ still needed?"

    # The instrumented worker publishes every job's lifecycle as legacy lines, and nothing over OTLP:
    # what the heap holds is then clues' and rq's, not an exporter's (an OTLP/HTTP exporter's own
    # heap drifts by 10-20 B/job, with or without clues; docs/performance.md).
    job_ids = enqueue(redis_url, "clues")
    lines = tmp_path / "clues.log"
    no_otlp = {f"OTEL_{signal}_EXPORTER": "none" for signal in ("TRACES", "LOGS", "METRICS")}
    samples = run_probed_worker(
        redis_url, "clues", tmp_path, {**no_otlp, "OTEL_PYTHON_CLUES_PUBLISHER": str(lines)}, instrument=True
    )
    finished = [line for line in lines.read_text().splitlines() if '"perform_finished"' in line]
    assert len(finished) == JOBS  # it was instrumented
    clues = heap_growth_per_job(samples)
    # One job id kept per job ("RQ_JOB_ID=<36 chars>" in a malloc chunk) is at least 48 B/job.
    assert clues < 16, f"the instrumented worker's C heap grew {clues:.1f} B/job (plain rq: {plain:.1f})"

    # The job, in the horse, still sees its own id where C code and child programs look.
    connection = Redis.from_url(redis_url)
    jobs = Job.fetch_many(job_ids, connection=connection)
    assert [job.return_value() if job else None for job in jobs] == job_ids
