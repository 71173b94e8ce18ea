"""Settings of the instrumentation: keyword arguments of ``instrument()``, else
``OTEL_PYTHON_CLUES_*`` environment variables, else defaults."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from opentelemetry_instrumentation_clues.runtime.threads import BoundedCaller
from opentelemetry_instrumentation_clues.values.redaction import (
    DEFAULT_REDACT_KWARGS,
    ArgsSanitizer,
    ArgumentPolicy,
    Redactor,
)


class Propagation(str, Enum):
    LINK = "link"  # the job's trace starts at enqueue; the enqueuing span is linked
    CHILD = "child"  # the job joins the enqueuing trace
    NONE = "none"  # nothing travels with the job


ENV_PREFIX = "OTEL_PYTHON_CLUES_"
# How long one job's arguments may take to render with args_repr (all their reprs together):
# past it they are spelled by type name, and after a few such timeouts repr is switched off.
ARGS_REPR_TIMEOUT_SECONDS = 0.2  # enough for a thread hand-off on a loaded machine


def _env(name: str) -> str | None:
    value = os.environ.get(ENV_PREFIX + name)
    return value.strip() if value and value.strip() else None


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class CluesConfig:
    propagation: Propagation = Propagation.LINK
    capture_args: bool = True
    max_value_length: int = 2048  # args, kwargs, metadata values and exception messages
    max_stacktrace_length: int = 16384  # exception.stacktrace keeps both ends, drops the middle
    flush_timeout_millis: int = 2000
    preprocessor_timeout_millis: int = 1000
    # Keys whose values become "[REDACTED]" in args/kwargs (see redaction.py); empty: no redaction.
    redact_kwargs: tuple[str, ...] = DEFAULT_REDACT_KWARGS
    # (func_name, args, kwargs) -> (args, kwargs), applied before redaction.
    args_sanitizer: ArgsSanitizer | None = field(default=None, compare=False)
    # Spell argument objects without a JSON form by repr() (time-limited) instead of their type name.
    args_repr: bool = False
    # Lifecycle events as span events as well as log records (OTEP 4430 deprecates span events).
    span_events: bool = True

    @cached_property
    def arguments(self) -> ArgumentPolicy:
        """How a job's arguments are made safe before they go on events (built once)."""
        repr_caller = BoundedCaller("args repr", ARGS_REPR_TIMEOUT_SECONDS) if self.args_repr else None
        return ArgumentPolicy(
            sanitizer=self.args_sanitizer, redactor=Redactor(self.redact_kwargs), repr_caller=repr_caller
        )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> CluesConfig:
        """Build the config; an invalid value raises ValueError naming the setting."""

        def pick(key: str, env_name: str) -> Any:
            if kwargs.get(key) is not None:
                return kwargs[key]
            return _env(env_name)

        propagation = pick("propagation", "PROPAGATION") or cls.propagation.value
        try:
            mode = Propagation(str(propagation).lower())
        except ValueError:
            choices = ", ".join(p.value for p in Propagation)
            raise ValueError(f"clues propagation must be one of {choices}, not {propagation!r}") from None
        capture = pick("capture_args", "CAPTURE_ARGS")
        args_repr = pick("args_repr", "ARGS_REPR")
        span_events = pick("span_events", "SPAN_EVENTS")
        sanitizer = kwargs.get("args_sanitizer")
        if sanitizer is None and _env("ARGS_SANITIZER"):
            sanitizer = load_callable(str(_env("ARGS_SANITIZER")), ENV_PREFIX + "ARGS_SANITIZER")
        if sanitizer is not None and not callable(sanitizer):
            raise ValueError(f"clues args_sanitizer must be callable, not {type(sanitizer).__name__}")
        return cls(
            propagation=mode,
            capture_args=cls.capture_args if capture is None else _flag(capture),
            max_value_length=_positive_int(pick("max_value_length", "MAX_VALUE_LENGTH"), cls.max_value_length),
            max_stacktrace_length=_positive_int(
                pick("max_stacktrace_length", "MAX_STACKTRACE_LENGTH"), cls.max_stacktrace_length
            ),
            preprocessor_timeout_millis=_positive_int(
                pick("preprocessor_timeout_millis", "PREPROCESSOR_TIMEOUT_MILLIS"), cls.preprocessor_timeout_millis
            ),
            flush_timeout_millis=_positive_int(
                pick("flush_timeout_millis", "FLUSH_TIMEOUT_MILLIS"), cls.flush_timeout_millis
            ),
            redact_kwargs=_key_list(pick("redact_kwargs", "REDACT_KWARGS"), cls.redact_kwargs),
            args_sanitizer=sanitizer,
            args_repr=cls.args_repr if args_repr is None else _flag(args_repr),
            span_events=cls.span_events if span_events is None else _flag(span_events),
        )


def _positive_int(value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"clues setting must be a positive integer, not {value!r}") from None
    if number <= 0:
        raise ValueError(f"clues setting must be a positive integer, not {value!r}")
    return number


_NO_KEYS = ("none", "-")


def _key_list(value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    """``"a,b"`` or an iterable of names; ``""``/``[]``/``"none"`` mean none at all."""
    if value is None:
        return default
    if isinstance(value, str):
        if value.strip().lower() in _NO_KEYS:
            return ()
        names: Iterable[Any] = value.split(",")
    elif isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        names = value
    else:
        raise ValueError(
            f"clues redact_kwargs must be a comma-separated string or a list of names, not {type(value).__name__}"
        )
    result = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"clues redact_kwargs entries must be strings, not {name!r}")
        if name.strip():
            result.append(name.strip())
    return tuple(result)


def load_callable(path: str, setting: str) -> Callable[..., Any]:
    """``package.module:function`` (or ``:Class.method``); ValueError naming ``setting`` when it fails."""
    module_name, _, attribute = path.strip().partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{setting} must look like package.module:function, not {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{setting}: cannot load {path!r} ({type(exc).__name__}: {exc})") from exc
    if not callable(target):
        raise ValueError(f"{setting}: {path!r} is not callable")
    return target
