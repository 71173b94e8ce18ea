"""requeue and cancel as users run them: producer, workers and the requeuing/canceling process apart."""

from __future__ import annotations

import json
import sys
import uuid

import pytest
from redis import Redis
from rq.job import Job

from tests.otlp_receiver import otlp_receiver
from tests.processes import enqueue_cmd, env_with, instrumented, rq_worker_cmd, run
from tests.test_rq_paths_processes import by_hash

FIRST_RUN = ["enqueued", "dequeued", "perform_started", "failed"]
SECOND_RUN = ["enqueued", "dequeued", "perform_started", "perform_finished"]

REQUEUE = {
    "registry": "from rq.registry import FailedJobRegistry; "
    "FailedJobRegistry('requeue', connection=c).requeue({job_id!r})",
    "job.requeue": "from rq.job import Job; Job.fetch({job_id!r}, connection=c).requeue()",
}


@pytest.mark.parametrize("how", list(REQUEUE))
def test_a_requeued_job_goes_on_counting_attempts_in_one_trace(redis_url, how):
    marker = f"conventions-requeue-{uuid.uuid4().hex}"
    with otlp_receiver() as receiver:
        env = env_with(receiver.otel_env("requeue"))
        job_id = run(
            instrumented(
                *enqueue_cmd(redis_url, "requeue", "tests.conventions_jobs.fail_once_per_run", 1, marker, redis_url)
            ),
            env,
        ).stdout.strip()
        run(instrumented(*rq_worker_cmd(redis_url, "requeue")), env)  # forking Worker: attempt 1 fails
        code = f"from redis import Redis; c = Redis.from_url({redis_url!r}); " + REQUEUE[how].format(job_id=job_id)
        run(instrumented(sys.executable, "-c", code), env)
        run(instrumented(*rq_worker_cmd(redis_url, "requeue")), env)  # attempt 2 succeeds
        received = receiver.wait_for(
            lambda r: (
                [a["clues.event_type"] for events in by_hash(r).values() for a in events][-1:] == ["perform_finished"]
            )
        )
    assert Job.fetch(job_id, connection=Redis.from_url(redis_url)).get_status() == "finished"
    (events,) = by_hash(received).values()
    assert [a["clues.event_type"] for a in events] == FIRST_RUN + SECOND_RUN
    # attempt 1 fails; the requeue's send counts it (it was never saved in job.meta); attempt 2 runs
    assert [(a["clues.event_type"], a["rq.job.attempt"]) for a in events] == [
        ("enqueued", 0),
        ("dequeued", 1),
        ("perform_started", 1),
        ("failed", 1),
        ("enqueued", 1),
        ("dequeued", 2),
        ("perform_started", 2),
        ("perform_finished", 2),
    ]
    processes = [s for s in received.spans if s.name == "process requeue"]
    assert len(processes) == 2 and len({s.trace_id for s in processes}) == 1


def test_a_job_canceled_by_another_process_ends_with_canceled(redis_url, tmp_path):
    log = tmp_path / "clues.log"
    with otlp_receiver() as receiver:
        env = env_with({**receiver.otel_env("cancel"), "OTEL_PYTHON_CLUES_PUBLISHER": f"file://{log}"})
        job_id = run(instrumented(*enqueue_cmd(redis_url, "cancel", "tests.jobs.add", 1, "1", "2")), env).stdout.strip()
        code = (
            f"from redis import Redis; from rq.job import cancel_job; "
            f"cancel_job({job_id!r}, connection=Redis.from_url({redis_url!r}))"
        )
        run(instrumented(sys.executable, "-c", code), env)
        run(instrumented(*rq_worker_cmd(redis_url, "cancel")), env)  # nothing to run
        received = receiver.wait_for(
            lambda r: any(a["clues.event_type"] == "canceled" for a in (x.attributes for x in r.logs))
        )
    (events,) = by_hash(received).values()
    assert [a["clues.event_type"] for a in events] == ["enqueued", "canceled"]
    (send,) = [s for s in received.spans if s.name == "send cancel"]
    (cancel,) = [s for s in received.spans if s.name == "cancel cancel"]
    assert cancel.trace_id == send.trace_id and cancel.parent_span_id == send.span_id
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["event_type"] for line in lines] == ["enqueued", "canceled"]
    assert {line["metadata"]["event_hash"] for line in lines} == {events[0]["clues.event_hash"]}
