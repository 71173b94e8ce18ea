"""Jobs for tests/test_conventions.py (kept apart from tests/jobs.py, which other tests share)."""

from __future__ import annotations


class Billing:
    class QuotaExceeded(Exception):
        """Nested, so its qualname has a dot of its own: ``Billing.QuotaExceeded``."""


def over_quota() -> None:
    raise Billing.QuotaExceeded("quota exceeded")


def fail_once_per_run(marker_key: str, redis_url: str) -> str:
    """Fails the first time it runs, succeeds afterwards (a job worth requeuing)."""
    from redis import Redis

    connection = Redis.from_url(redis_url)
    try:
        if connection.incr(marker_key) == 1:
            raise RuntimeError("first run fails")
    finally:
        connection.close()
    return "ok"
