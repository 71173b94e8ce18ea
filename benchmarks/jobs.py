"""The job every benchmark runs: as cheap as a job can be, so the table shows per-job overhead."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    return a + b


def add_beside_worker_sdk_calls(a: int, b: int) -> int:
    """``add``, plus the SDK calls clues makes per job in a worker (benchmarks/sdk_floor.py)."""
    from benchmarks.sdk_floor import worker_side_sdk_calls

    worker_side_sdk_calls()
    return a + b
