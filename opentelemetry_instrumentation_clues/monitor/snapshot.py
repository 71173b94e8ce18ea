"""One read of RQ's queue and worker state from Redis, for ``clues monitor``.

Why one server-side script and not a pipeline: the keys to read depend on what earlier reads
return (queue names from ``rq:queues``, worker keys from ``rq:workers``, the job at the head of
each queue), so a pipeline would need three round trips. The script does it in one, and Redis
runs it atomically, so every count of a snapshot is from the same instant (a job moving from the
queue to the started registry is never counted twice or missed). Its cost per collection is
O(Q + W): per queue 1 LLEN, 5 ZCARD/ZCOUNT, 1 LRANGE of at most ``HEAD_PROBE`` ids and up to as many
HGETs; per worker 1 HMGET; plus at most two SMEMBERS. Nothing is read per job.

Key names come from rq's own classes (``Queue``, the registries, ``Worker``, ``Job``), so a
change of layout between rq 2.x and 3.x, or a subclass with another prefix, is followed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from redis import Redis
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.utils import utcparse
from rq.worker import Worker

#: The job statuses reported by ``rq.queue.jobs``: the queue itself, then its registries.
QUEUED = "queued"
REGISTRIES = {
    "started": StartedJobRegistry,
    "deferred": DeferredJobRegistry,
    "scheduled": ScheduledJobRegistry,
    "failed": FailedJobRegistry,
    "finished": FinishedJobRegistry,
}
STATUSES = (QUEUED, *REGISTRIES)
#: Registries whose scores are expiry times on every rq we support (2.6 … 3.x): an entry whose time
#: has passed is one rq's ``registry.count`` would clean up first (an expired result, a started job
#: whose worker died), so it is not counted. The deferred registry scores by expiry on rq 2.6 and by
#: creation time from 2.7 on, and the scheduled one by when the job is due: those count every entry.
EXPIRING = frozenset(("started", "failed", "finished"))

#: How many ids at the head of a queue are probed for an ``enqueued_at`` (a deleted job can
#: leave its id behind in the list; rq skips such ids when it dequeues).
HEAD_PROBE = 10

_SENTINEL = "\x00queue\x00"

_SCRIPT = """
local cfg = cjson.decode(ARGV[1])
local names = cfg.queues
if #names == 0 then
  for _, key in ipairs(redis.call('SMEMBERS', cfg.queues_key)) do
    if string.sub(key, 1, #cfg.queue_prefix) == cfg.queue_prefix then
      table.insert(names, string.sub(key, #cfg.queue_prefix + 1))
    end
  end
end
local queues = {}
for _, name in ipairs(names) do
  local key = cfg.queue_prefix .. name
  local counts = {queued = redis.call('LLEN', key)}
  for status, affix in pairs(cfg.registries) do
    local rkey = affix[1] .. name .. affix[2]
    if affix[3] then  -- scored by expiry: what rq's own count would leave after its cleanup
      counts[status] = redis.call('ZCOUNT', rkey, '(' .. ARGV[2], '+inf')
    else
      counts[status] = redis.call('ZCARD', rkey)
    end
  end
  local head = ''
  for _, id in ipairs(redis.call('LRANGE', key, 0, cfg.head_probe - 1)) do
    local at = redis.call('HGET', cfg.job_prefix .. id, 'enqueued_at')
    if at then
      head = at
      break
    end
  end
  queues[#queues + 1] = {name, counts, head}
end
local workers = {}
for _, wkey in ipairs(redis.call('SMEMBERS', cfg.workers_key)) do
  local w = redis.call('HMGET', wkey, 'state', 'queues')
  if w[1] then
    workers[#workers + 1] = {w[1], w[2] or ''}
  end
end
return cjson.encode({queues = queues, workers = workers})
"""


@dataclass(frozen=True)
class QueueState:
    name: str
    counts: dict[str, int]  # status -> number of jobs
    head_enqueued_at: float | None  # epoch seconds of the job at the head; None when empty


@dataclass(frozen=True)
class Snapshot:
    """RQ's state at one instant: what the three monitor gauges report."""

    taken_at: float  # epoch seconds (local clock, like rq's enqueued_at)
    queues: list[QueueState]
    workers: list[tuple[str, list[str]]] = field(default_factory=list)  # (state, queue names)

    def oldest_job_age(self, queue: QueueState) -> float:
        if queue.head_enqueued_at is None:
            return 0.0
        return max(0.0, self.taken_at - queue.head_enqueued_at)

    def worker_counts(self) -> dict[tuple[str, str], int]:
        """{(queue, state): workers}, with idle and busy present (0) for every monitored queue,
        so "no worker for this queue" is a value a rule can test rather than a missing series."""
        counts = {(q.name, state): 0 for q in self.queues for state in ("idle", "busy")}
        monitored = {q.name for q in self.queues}
        for state, names in self.workers:
            for name in names:
                if name in monitored:
                    counts[(name, state)] = counts.get((name, state), 0) + 1
        return counts


def _affixes(key: str, expiring: bool) -> list[str | bool]:
    prefix, _, suffix = key.partition(_SENTINEL)
    return [prefix, suffix, expiring]


class SnapshotReader:
    """Reads a :class:`Snapshot` with one script call (``EVALSHA``; loaded on first use)."""

    def __init__(self, connection: Redis, queue_names: list[str] | None = None) -> None:
        self.connection = connection
        registries = {
            status: _affixes(cls(_SENTINEL, connection=connection).key, status in EXPIRING)
            for status, cls in REGISTRIES.items()
        }
        self._config = json.dumps(
            {
                "queues": list(queue_names or []),
                "queues_key": Queue.redis_queues_keys,
                "queue_prefix": Queue.redis_queue_namespace_prefix,
                "job_prefix": Job.redis_job_namespace_prefix,
                "workers_key": Worker.redis_workers_keys,
                "registries": registries,
                "head_probe": HEAD_PROBE,
            }
        )
        self._script = connection.register_script(_SCRIPT)

    def read(self) -> Snapshot:
        """One round trip; raises redis' errors (the caller decides what an outage means)."""
        raw = self._script(args=[self._config, repr(time.time())])
        taken_at = time.time()
        data: dict[str, Any] = json.loads(raw)
        queues = [
            QueueState(
                name,
                {status: int(counts.get(status, 0)) for status in STATUSES},
                utcparse(head.decode() if isinstance(head, bytes) else head).timestamp() if head else None,
            )
            for name, counts, head in (data["queues"] or [])  # cjson encodes an empty list as {}
        ]
        workers = [(state, [q for q in names.split(",") if q]) for state, names in (data["workers"] or [])]
        return Snapshot(taken_at, queues, workers)


__all__ = ["EXPIRING", "HEAD_PROBE", "QUEUED", "STATUSES", "QueueState", "Snapshot", "SnapshotReader"]
