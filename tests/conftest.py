from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from tests.redis_server import url_for_db

# Each test gets a database of its own among 1..15 (0 is left to humans), flushed before
# and after. A lease key in db 0 claims it, so test runs that share a Redis server (two
# checkouts, CI beside a developer) never flush each other's data.
_DB_FIRST = int(os.environ.get("CLUES_TEST_DB_FIRST", "1"))
_DB_LAST = int(os.environ.get("CLUES_TEST_DB_LAST", "15"))
_next_db = itertools.cycle(range(_DB_FIRST, _DB_LAST + 1))
_LEASE_SECONDS = 900


def _lease_a_database(control: redis.Redis, token: str) -> int:
    deadline = time.monotonic() + _LEASE_SECONDS
    while time.monotonic() < deadline:
        for _ in range(_DB_LAST - _DB_FIRST + 1):
            db = next(_next_db)
            if control.set(f"clues-tests:db-lease:{db}", token, nx=True, ex=_LEASE_SECONDS):
                return db
        time.sleep(0.2)  # every database is leased by another test run: wait for one to come back
    raise RuntimeError("no free Redis test database")


@contextmanager
def _leased_database() -> Iterator[str]:
    control = redis.Redis.from_url(url_for_db(0))
    token = f"{os.getpid()}-{uuid.uuid4().hex}"
    db = _lease_a_database(control, token)
    url = url_for_db(db)
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    try:
        yield url
    finally:
        conn.flushdb()
        conn.close()
        if control.get(f"clues-tests:db-lease:{db}") == token.encode():
            control.delete(f"clues-tests:db-lease:{db}")
        control.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    with _leased_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_redis_url() -> Iterator[str]:
    """A database of its own for a whole test module (long-lived workers shared by its tests)."""
    with _leased_database() as url:
        yield url


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    try:
        yield conn
    finally:
        conn.close()


from tests.otel_memory import captured, instrumented  # noqa: E402,F401  (fixtures)


@pytest.fixture(autouse=True)
def _fresh_error_report() -> Iterator[None]:
    from opentelemetry_instrumentation_clues.runtime.safety import errors

    errors.reset()
    yield
    errors.reset()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI (CI=true) a skipped test is a failure: .ci/run installs every tool the tests need."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {report.longrepr}"
