"""Settings of the instrumentation: keyword arguments of ``instrument()``, else
``OTEL_PYTHON_CLUES_*`` environment variables, else defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Propagation(str, Enum):
    LINK = "link"  # the job's trace starts at enqueue; the enqueuing span is linked
    CHILD = "child"  # the job joins the enqueuing trace
    NONE = "none"  # nothing travels with the job


ENV_PREFIX = "OTEL_PYTHON_CLUES_"


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
    max_value_length: int = 2048
    flush_timeout_millis: int = 2000
    preprocessor_timeout_millis: int = 1000

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
        return cls(
            propagation=mode,
            capture_args=cls.capture_args if capture is None else _flag(capture),
            max_value_length=_positive_int(pick("max_value_length", "MAX_VALUE_LENGTH"), cls.max_value_length),
            preprocessor_timeout_millis=_positive_int(
                pick("preprocessor_timeout_millis", "PREPROCESSOR_TIMEOUT_MILLIS"), cls.preprocessor_timeout_millis
            ),
            flush_timeout_millis=_positive_int(
                pick("flush_timeout_millis", "FLUSH_TIMEOUT_MILLIS"), cls.flush_timeout_millis
            ),
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
