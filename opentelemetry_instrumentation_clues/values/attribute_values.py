"""User values made fit for OTel attributes: job arguments as bounded JSON, metadata values as
the attribute types OTLP can carry. No user code runs here unless ``args_repr`` asks for it."""

from __future__ import annotations

from typing import Any

from opentelemetry.util.types import AttributeValue

from opentelemetry_instrumentation_clues.values.converter import (
    bounded_json,
    clean_text,
    cut_text,
    repr_or_label,
    type_label,
)
from opentelemetry_instrumentation_clues.values.redaction import ArgumentPolicy


def render_arguments(args: Any, kwargs: Any, limit: int, arguments: ArgumentPolicy) -> tuple[str, str]:
    """Bounded JSON of a job's args and kwargs, objects without a JSON form spelled by type name.

    With ``args_repr`` they are spelled by ``repr()`` instead, which is user code and may
    sleep or hang: both are rendered in the policy's helper thread, and when that does not
    finish in time (or is switched off after repeated timeouts) the caller renders them by
    type name after all. Either way the enqueue or dequeue waits a bounded time."""
    caller = arguments.repr_caller
    if caller is not None:
        result: list[str] = []

        def render() -> None:
            result.append(bounded_json(args, limit, arguments.redactor, repr_or_label))
            result.append(bounded_json(kwargs, limit, arguments.redactor, repr_or_label))

        if caller.call(render) and len(result) == 2:
            return result[0], result[1]
    return bounded_json(args, limit, arguments.redactor), bounded_json(kwargs, limit, arguments.redactor)


_INT64 = (-(2**63), 2**63 - 1)


def attribute_value(value: Any, limit: int) -> AttributeValue:
    """An OTel attribute value for arbitrary user metadata (exportable by OTLP).

    Subclasses of int, float and str are read through the builtin's own methods, and
    anything else goes to :func:`bounded_json`: no user code runs here."""
    kind = type(value)
    if kind is bool:
        return bool(value)
    if issubclass(kind, int):
        number = int.__int__(value)
        if _INT64[0] <= number <= _INT64[1]:
            return number
        return bounded_json(number, limit)  # OTLP ints are 64-bit
    if issubclass(kind, float):
        return float.__float__(value)
    if issubclass(kind, str):
        return clean_text(cut_text(str.__str__(value), limit))
    return bounded_json(value, limit)


def key_text(key: Any) -> str:
    """str() of a builtin scalar key; any other key by its type name (its __str__ is user code)."""
    if type(key) in (bool, int, float, type(None)):
        return str(key)
    return str.__str__(key) if issubclass(type(key), str) else type_label(key)
