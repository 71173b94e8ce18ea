"""The job every benchmark runs: as cheap as a job can be, so the table shows per-job overhead."""

from __future__ import annotations


def add(a: int, b: int) -> int:
    return a + b
