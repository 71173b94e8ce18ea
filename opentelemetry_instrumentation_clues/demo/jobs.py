"""The jobs of ``clues demo`` and of the compose stack's producer: a small online shop's background work.

They sleep for a moment to look like real work; the sleeps are short so the demo finishes quickly.
The workers import them by name (``opentelemetry_instrumentation_clues.demo.jobs.resize_image``).
"""

from __future__ import annotations

import time


class PaymentDeclined(Exception):
    """The card was refused: the demo's job that always fails."""


class WarehouseTimeout(Exception):
    """A flaky dependency: the demo's retried job fails with this before it succeeds."""


def resize_image(image_id: int, width: int = 640) -> str:
    """Fast: a thumbnail."""
    time.sleep(0.01 + (image_id % 7) * 0.01)
    return f"image-{image_id}-{width}w.jpg"


def send_email(to: str, template: str = "welcome") -> str:
    """Fast, called with keyword arguments."""
    time.sleep(0.02)
    return f"sent {template} to {to}"


def build_report(report_id: int, rows: int = 1000) -> int:
    """Slow: runs on the ``slow`` queue."""
    time.sleep(0.3 + (report_id % 4) * 0.1)
    from opentelemetry_instrumentation_clues import (
        clues_metadata,  # runtime metadata: appears on the job's later events
    )

    clues_metadata()["rows"] = rows
    return rows


def charge_card(order_id: int, amount_cents: int) -> None:
    """Always fails: ends in ``failed`` with the exception, message and backtrace."""
    time.sleep(0.02)
    raise PaymentDeclined(f"card declined for order {order_id} ({amount_cents / 100:.2f} EUR)")


def sync_inventory(sku: str) -> str:
    """Enqueued with ``Retry(max=2)``: fails on its first two attempts, succeeds on the third."""
    from rq import get_current_job

    time.sleep(0.05)
    job = get_current_job()
    if job is not None and (job.retries_left or 0) > 0:
        raise WarehouseTimeout(f"warehouse API timed out syncing {sku} ({job.retries_left} retries left)")
    return f"{sku} in sync"


def send_reminder(user_id: int) -> str:
    """Enqueued with ``enqueue_in``: run by the worker's scheduler a few seconds later."""
    time.sleep(0.02)
    return f"reminded user {user_id}"
