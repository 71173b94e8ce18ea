"""SpawnWorker exporting over gRPC to a hung collector, gRPC's fork handlers on: no job is harmed.

rq 2 spawns each horse with ``os.spawnv`` (a fork in Python, then exec), rq 3 through
``subprocess``; each horse is a fresh interpreter that exports its own spans and flushes
them within its budget. With the collector hung every job finishes and nothing forks
inside an RPC; once it answers, the later jobs arrive complete. (A spawned child execs
at once, so this holds with or without clues' gRPC relay, which a SpawnWorker still
starts before each spawn: checked on rq 2.12 with the relay off.) Small enough to run on
every rq line whose SpawnWorker works.
"""

from __future__ import annotations

import redis
from rq import Queue

from tests.otlp_receiver import free_port, hung_collector, otlp_receiver
from tests.processes import running_worker, wait_until_done
from tests.test_grpc_collector_trouble import SKIPPED_HANDLERS, complete_stories, enqueue, grpc_env, no_exports
from tests.test_rq_paths_processes import SPAWN_WORKS  # rq < 2.7's SpawnWorker cannot start a horse

JOBS = 8
AFTER_RECOVERY = 4

SPAWN = ("-w", "rq.worker.SpawnWorker")


if SPAWN_WORKS:

    def test_spawn_worker_with_a_hung_grpc_collector_changes_no_job(redis_url):
        queue = Queue("grpc-spawn-hung", connection=redis.Redis.from_url(redis_url))
        port = free_port()
        with running_worker(redis_url, queue.name, grpc_env("worker", port, "handlers-on"), *SPAWN) as worker:
            with hung_collector(port):
                enqueue(redis_url, queue.name, JOBS, no_exports("producer"))
                wait_until_done(queue, JOBS, worker)
            assert queue.failed_job_registry.count == 0
            assert queue.finished_job_registry.count == JOBS
            assert SKIPPED_HANDLERS not in worker.stderr()

            with otlp_receiver("grpc", port=port) as receiver:
                enqueue(redis_url, queue.name, AFTER_RECOVERY, grpc_env("producer", port))
                wait_until_done(queue, JOBS + AFTER_RECOVERY, worker)
                receiver.wait_for(lambda received: complete_stories(received) >= AFTER_RECOVERY, timeout=180)
        assert queue.failed_job_registry.count == 0
