from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
import redis

from tests.redis_server import url_for_db

# Tests get databases 1..15 in turn (0 is left to humans); each is flushed
# before and after its test, so no test sees another's keys.
_DB_FIRST = int(os.environ.get("CLUES_TEST_DB_FIRST", "1"))
_DB_LAST = int(os.environ.get("CLUES_TEST_DB_LAST", "15"))
_next_db = itertools.cycle(range(_DB_FIRST, _DB_LAST + 1))


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = url_for_db(next(_next_db))
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    try:
        yield url
    finally:
        conn.flushdb()
        conn.close()


@pytest.fixture(scope="module")
def module_redis_url() -> Iterator[str]:
    """A database of its own for a whole test module (long-lived workers shared by its tests)."""
    url = url_for_db(next(_next_db))
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    try:
        yield url
    finally:
        conn.flushdb()
        conn.close()


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
    from opentelemetry_instrumentation_clues.safety import errors

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
