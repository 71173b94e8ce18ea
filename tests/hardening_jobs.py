"""Job functions and hostile argument types for the hardening tests (importable by workers)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def accept(*args: Any, **kwargs: Any) -> int:
    """Takes anything, returns how many arguments it got."""
    return len(args) + len(kwargs)


class Opaque:
    """A custom object json knows nothing about."""

    def __init__(self, value: int = 1) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Opaque({self.value})"


class BadRepr:
    """Its __repr__ raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class CountingRepr:
    """Counts how often it is converted to text, in this process."""

    calls = 0

    def __repr__(self) -> str:
        type(self).calls += 1
        return "CountingRepr()"


def sanitize_drop_everything(func_name: str, args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """An args sanitizer for OTEL_PYTHON_CLUES_ARGS_SANITIZER."""
    return [f"{len(args)} args hidden by {func_name}"], {}


def sanitizer_that_raises(func_name: str, args: Any, kwargs: Any) -> Any:
    raise KeyError("sanitizer bug")


not_callable = 42


@contextmanager
def clues_with_log_file(captured: Any, path: Any, **instrument_kwargs: Any) -> Iterator[None]:
    """Instrument with the in-memory providers plus a LogPublisher(path); uninstrument (flushing) after."""
    from opentelemetry_instrumentation_clues import CluesInstrumentor, LogPublisher

    instrumentor = CluesInstrumentor()
    instrumentor.instrument(
        tracer_provider=captured.tracer_provider,
        logger_provider=captured.logger_provider,
        event_publisher=LogPublisher(path),
        **instrument_kwargs,
    )
    try:
        yield
    finally:
        instrumentor.uninstrument()  # flushes the legacy lines, a work horse's included


def raise_huge(size: int) -> None:
    """Fails with a message of ``size`` chars that ends in a recognisable tail."""
    raise ValueError("x" * size + " THE END")


class SlowRepr:
    """Its __repr__ notes the call in a marker file, then sleeps: clues must never call it by default."""

    def __init__(self, marker: str, seconds: float = 2.0) -> None:
        self.marker = marker
        self.seconds = seconds

    def __repr__(self) -> str:
        import os
        import time

        with open(self.marker, "a", encoding="utf-8") as file:
            file.write(f"{type(self).__name__}.__repr__ in pid {os.getpid()}\n")
        time.sleep(self.seconds)
        return f"{type(self).__name__}()"


class HangingRepr(SlowRepr):
    """Its __repr__ notes the call, then does not return for an hour (for a test: forever)."""

    def __init__(self, marker: str) -> None:
        super().__init__(marker, 3600.0)
