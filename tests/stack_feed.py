"""A long-lived producer for the viewing-stack tests: ``python -m tests.stack_feed URL [SECONDS]``.

Run under ``opentelemetry-instrument`` like the compose ``demo`` service, it keeps a worker on
``default slow`` busy with the kinds of jobs the dashboards show, one round every ROUND seconds:

* ``default``: successes, plain failures (ValueError), Retry(max=2) failures (attempts end
  ``retried``, ``retried``, ``failure``) and a job scheduled 1 s ahead (``schedule``, needs the
  worker's ``--with-scheduler``);
* ``slow``: a job sleeping SLOW_SECONDS, then jobs that wait in the queue behind it, so the
  queue-wait histogram has observations on both sides of the 1 s SLA bucket, and one that is
  canceled while it waits.

The pacing sleep is the producer's rate, not a synchronisation: tests await what the worker
reports. It stops by itself after SECONDS (default 600) so it never outlives a test run by much.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from redis import Redis
from rq import Queue, Retry

ROUND = 3.0
SLOW_SECONDS = 1.2
DEFAULT, SLOW = "default", "slow"


def one_round(default: Queue, slow: Queue, i: int) -> None:
    for n in range(3):
        default.enqueue("tests.jobs.add", i, n)
    default.enqueue("tests.jobs.fail", "planned")
    default.enqueue("tests.jobs.fail", "again", retry=Retry(max=2))
    default.enqueue_in(timedelta(seconds=1), "tests.jobs.add", i, 100)
    sleeper = slow.enqueue("tests.jobs.sleep", SLOW_SECONDS)
    default.enqueue("tests.jobs.add", i, 200, depends_on=sleeper)  # deferred until the sleeper is done
    for n in range(2):
        slow.enqueue("tests.jobs.add", i, n)  # waits >= SLOW_SECONDS behind the sleeper
    slow.enqueue("tests.jobs.add", i, 300).cancel()  # changed our mind while it waited: canceled


def main(url: str, seconds: str = "600") -> None:
    connection = Redis.from_url(url)
    default, slow = Queue(DEFAULT, connection=connection), Queue(SLOW, connection=connection)
    deadline = time.monotonic() + float(seconds)
    i = 0
    while time.monotonic() < deadline:
        one_round(default, slow, i)
        i += 1
        time.sleep(ROUND)


if __name__ == "__main__":
    main(*sys.argv[1:])
