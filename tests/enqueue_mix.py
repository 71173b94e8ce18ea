"""Producer for metric tests: ``python -m tests.enqueue_mix URL QUEUE SUCCESSES FAILURES RETRIED``.

RETRIED jobs fail with Retry(max=2): three attempts each (retried, retried, failure).
"""

from __future__ import annotations

import sys

from redis import Redis
from rq import Queue, Retry


def main(url: str, queue_name: str, successes: str, failures: str, retried: str) -> None:
    queue = Queue(queue_name, connection=Redis.from_url(url))
    for i in range(int(successes)):
        queue.enqueue("tests.jobs.add", i, 1)
    for _ in range(int(failures)):
        queue.enqueue("tests.jobs.fail", "planned")
    for _ in range(int(retried)):
        queue.enqueue("tests.jobs.fail", "again", retry=Retry(max=2))


if __name__ == "__main__":
    main(*sys.argv[1:])
