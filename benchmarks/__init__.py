"""Benchmarks: ``python benchmarks/throughput.py`` (see docs/performance.md)."""
