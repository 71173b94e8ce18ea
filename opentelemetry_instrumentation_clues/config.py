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

from opentelemetry_instrumentation_clues import environment_variables as env
from opentelemetry_instrumentation_clues.runtime.safety import Place
from opentelemetry_instrumentation_clues.runtime.threads import TimeLimitedCaller
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


class ConfigurationError(ValueError, TypeError):
    """A bad clues setting (keyword argument or environment variable); the message names it.

    A ValueError and a TypeError both, as the two kinds of bad setting were before there was one type.
    """


# How long one job's arguments may take to render with args_repr (all their reprs together):
# past it they are spelled by type name, and after a few such timeouts repr is switched off.
ARGS_REPR_TIMEOUT_SECONDS = 0.2  # enough for a thread hand-off on a loaded machine


def _env(name: str) -> str | None:
    value = os.environ.get(name)
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
    # Keys whose values become "[REDACTED]" in args/kwargs (see values/redaction.py); empty: no redaction.
    redact_kwargs: tuple[str, ...] = DEFAULT_REDACT_KWARGS
    # (func_name, args, kwargs) -> (args, kwargs), applied before redaction.
    args_sanitizer: ArgsSanitizer | None = field(default=None, compare=False)
    # Spell argument objects without a JSON form by repr() (time-limited) instead of their type name.
    args_repr: bool = False
    # Lifecycle events as span events as well as log records (OTEP 4430 deprecates span events).
    span_events: bool = True
    # The seed's JSON-line output (legacy/): where lines go (None: no legacy output), how an event
    # becomes a line (None: legacy.marshaller.json_marshaller), and the enqueue-time item preprocessor.
    event_publisher: Any = field(default=None, compare=False)
    # OTEL_PYTHON_CLUES_PUBLISHER when no event_publisher is given: legacy/wiring.py builds the publisher.
    publisher_spec: str | None = None
    event_marshaller: Callable[..., str] | None = field(default=None, compare=False)
    item_preprocessor: Callable[..., Any] | None = field(default=None, compare=False)

    @property
    def legacy_output(self) -> bool:
        """Whether the seed's JSON lines are wanted (a publisher or a publisher spec)."""
        return self.event_publisher is not None or bool(self.publisher_spec)

    @cached_property
    def arguments(self) -> ArgumentPolicy:
        """How a job's arguments are made safe before they go on events (built once)."""
        repr_caller = TimeLimitedCaller(Place.ARGS_REPR, ARGS_REPR_TIMEOUT_SECONDS) if self.args_repr else None
        return ArgumentPolicy(
            sanitizer=self.args_sanitizer, redactor=Redactor(self.redact_kwargs), repr_caller=repr_caller
        )

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> CluesConfig:
        """Build the config; an invalid value raises ConfigurationError naming the setting."""

        def pick(key: str, env_name: str) -> Any:
            if kwargs.get(key) is not None:
                return kwargs[key]
            return _env(env_name)

        propagation = pick("propagation", env.OTEL_PYTHON_CLUES_PROPAGATION) or cls.propagation.value
        try:
            mode = Propagation(str(propagation).lower())
        except ValueError:
            choices = ", ".join(p.value for p in Propagation)
            raise ConfigurationError(f"clues propagation must be one of {choices}, not {propagation!r}") from None
        capture = pick("capture_args", env.OTEL_PYTHON_CLUES_CAPTURE_ARGS)
        args_repr = pick("args_repr", env.OTEL_PYTHON_CLUES_ARGS_REPR)
        span_events = pick("span_events", env.OTEL_PYTHON_CLUES_SPAN_EVENTS)
        sanitizer = kwargs.get("args_sanitizer")
        if sanitizer is None:
            sanitizer = _callable_from_env(env.OTEL_PYTHON_CLUES_ARGS_SANITIZER)
        if sanitizer is not None and not callable(sanitizer):
            raise ConfigurationError(f"clues args_sanitizer must be callable, not {type(sanitizer).__name__}")
        return cls(
            propagation=mode,
            capture_args=cls.capture_args if capture is None else _flag(capture),
            max_value_length=_positive_int(
                pick("max_value_length", env.OTEL_PYTHON_CLUES_MAX_VALUE_LENGTH), cls.max_value_length
            ),
            max_stacktrace_length=_positive_int(
                pick("max_stacktrace_length", env.OTEL_PYTHON_CLUES_MAX_STACKTRACE_LENGTH), cls.max_stacktrace_length
            ),
            preprocessor_timeout_millis=_positive_int(
                pick("preprocessor_timeout_millis", env.OTEL_PYTHON_CLUES_PREPROCESSOR_TIMEOUT_MILLIS),
                cls.preprocessor_timeout_millis,
            ),
            flush_timeout_millis=_positive_int(
                pick("flush_timeout_millis", env.OTEL_PYTHON_CLUES_FLUSH_TIMEOUT_MILLIS), cls.flush_timeout_millis
            ),
            redact_kwargs=_key_list(pick("redact_kwargs", env.OTEL_PYTHON_CLUES_REDACT_KWARGS), cls.redact_kwargs),
            args_sanitizer=sanitizer,
            args_repr=cls.args_repr if args_repr is None else _flag(args_repr),
            span_events=cls.span_events if span_events is None else _flag(span_events),
            **_legacy_settings(kwargs),
        )


def _legacy_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``event_publisher``, ``event_marshaller``, ``item_preprocessor``: keyword arguments, else env."""
    publisher = kwargs.get("event_publisher")
    spec = _env(env.OTEL_PYTHON_CLUES_PUBLISHER) if publisher is None else None
    if publisher is not None and not callable(getattr(publisher, "publish", None)):
        raise ConfigurationError(f"event_publisher needs a publish(line) method; got {type(publisher).__name__}")
    marshaller = kwargs.get("event_marshaller") or _callable_from_env(env.OTEL_PYTHON_CLUES_EVENT_MARSHALLER)
    preprocessor = kwargs.get("item_preprocessor") or _callable_from_env(env.OTEL_PYTHON_CLUES_ITEM_PREPROCESSOR)
    for name, value in (("event_marshaller", marshaller), ("item_preprocessor", preprocessor)):
        if value is not None and not callable(value):
            raise ConfigurationError(f"{name} must be callable; got {type(value).__name__}")
    return {
        "event_publisher": publisher,
        "publisher_spec": spec,
        "event_marshaller": marshaller,
        "item_preprocessor": preprocessor,
    }


def _callable_from_env(name: str) -> Callable[..., Any] | None:
    path = _env(name)
    return load_callable(path, name) if path else None


def _positive_int(value: Any, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"clues setting must be a positive integer, not {value!r}") from None
    if number <= 0:
        raise ConfigurationError(f"clues setting must be a positive integer, not {value!r}")
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
        raise ConfigurationError(
            f"clues redact_kwargs must be a comma-separated string or a list of names, not {type(value).__name__}"
        )
    result = []
    for name in names:
        if not isinstance(name, str):
            raise ConfigurationError(f"clues redact_kwargs entries must be strings, not {name!r}")
        if name.strip():
            result.append(name.strip())
    return tuple(result)


def load_callable(path: str, setting: str) -> Callable[..., Any]:
    """``package.module:function`` (or ``:Class.method``); ConfigurationError naming ``setting`` when it fails."""
    module_name, _, attribute = path.strip().partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"{setting} must look like package.module:function, not {path!r}")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"{setting}: cannot load {path!r} ({type(exc).__name__}: {exc})") from exc
    if not callable(target):
        raise ConfigurationError(f"{setting}: {path!r} is not callable")
    return target
