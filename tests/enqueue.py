"""Producer process for end-to-end tests: ``python -m tests.enqueue URL QUEUE FUNC COUNT [ARGS…]``.

Integer-looking arguments are passed as ints. Prints the enqueued job ids, one a line.
"""

from __future__ import annotations

import sys

from redis import Redis
from rq import Queue


def main(argv: list[str]) -> None:
    url, queue_name, func, count, *raw_args = argv
    args = [int(a) if a.lstrip("-").isdigit() else a for a in raw_args]
    queue = Queue(queue_name, connection=Redis.from_url(url))
    for _ in range(int(count)):
        print(queue.enqueue(func, *args).id)


if __name__ == "__main__":
    main(sys.argv[1:])
