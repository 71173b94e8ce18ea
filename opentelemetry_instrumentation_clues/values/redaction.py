"""Keep secrets out of events: the args sanitizer hook and the redaction of secret-looking keys.

A job's args and kwargs go into every event (span events, log records, legacy
lines). Before they are converted:

1. the user's ``args_sanitizer(func_name, args, kwargs) -> (args, kwargs)``, if
   any, rewrites them. When it raises or returns something else than a pair, the
   arguments are withheld (replaced by :data:`SANITIZER_FAILED`) and the error is
   logged once — failing closed, as a sanitizer exists to hide something;
2. every dict key that looks secret — top-level kwargs and keys of dicts nested
   anywhere in args or kwargs — has its value replaced by :data:`REDACTED`.

A pattern of 5 or more characters matches a key that contains it; a shorter one
(``auth``) must be a whole word of the key, so ``author`` is left alone. Matching
ignores case and the separators ``_ - . `` and space, and splits camelCase into
words: ``apiKey``, ``X-Api-Key`` and ``api_key`` all match ``api_key``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.runtime.threads import TimeLimitedCaller

REDACTED = "[REDACTED]"
SANITIZER_FAILED = "[withheld: the args sanitizer failed]"
DEFAULT_REDACT_KWARGS: tuple[str, ...] = (
    "password",
    "passwd",
    "token",
    "secret",
    "api_key",
    "apikey",
    "authorization",
    "auth",
    "credentials",
    "private_key",
)
_WHOLE_WORD_BELOW = 5  # shorter patterns must be a whole word of the key
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
_CACHE_LIMIT = 4096

ArgsSanitizer = Callable[[str, Sequence[Any], Mapping[str, Any]], Any]


class SanitizerResultError(TypeError):
    """The args sanitizer returned something else than ``(args, kwargs)``."""


def _normalised(text: str) -> str:
    # Chained replace() is several times faster than translate() for the short texts seen here.
    return text.lower().replace("_", "").replace("-", "").replace(".", "").replace(" ", "")


class Redactor:
    """Decides which dict keys hold secrets; cheap on the common path."""

    def __init__(self, patterns: Iterable[str] = DEFAULT_REDACT_KWARGS) -> None:
        normalised = {_normalised(p) for p in patterns if p and p.strip()}
        normalised.discard("")
        self.patterns: tuple[str, ...] = tuple(sorted(normalised))
        self._substrings = tuple(p for p in self.patterns if len(p) >= _WHOLE_WORD_BELOW)
        self._words = frozenset(p for p in self.patterns if len(p) < _WHOLE_WORD_BELOW)
        self._cache: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def is_secret(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        known = self._cache.get(key)
        if known is not None:
            return known
        secret = self._match(key)
        if len(self._cache) < _CACHE_LIMIT:  # key names repeat across jobs; bounded memory anyway
            self._cache[key] = secret
        return secret

    def _match(self, key: str) -> bool:
        flat = _normalised(key)
        if any(p in flat for p in self._substrings):
            return True
        if not self._words:
            return False
        if flat in self._words:
            return True
        return any(word.lower() in self._words for word in _WORDS.findall(key))

    def may_match(self, text: str) -> bool:
        """Whether ``text`` (JSON of args or kwargs) could contain a secret key: never a false 'no'."""
        if not self.patterns or '":' not in text:  # no dict key at all (the usual args list)
            return False
        flat = _normalised(text)
        return any(p in flat for p in self.patterns)


NO_REDACTION = Redactor(())


@dataclass(frozen=True)
class ArgumentPolicy:
    """What happens to a job's arguments before they are put on events."""

    sanitizer: ArgsSanitizer | None = None
    redactor: Redactor = NO_REDACTION
    # Objects without a JSON form: spelled by repr() in a helper thread with a time limit (None: by type name).
    repr_caller: TimeLimitedCaller | None = None

    def sanitized(self, func_name: str, args: list[Any], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        """The arguments after the user's sanitizer; markers when it fails (logged once)."""
        if self.sanitizer is None:
            return args, kwargs
        try:
            result = self.sanitizer(func_name, args, kwargs)
            if not isinstance(result, tuple | list) or len(result) != 2:
                raise SanitizerResultError(f"args_sanitizer must return (args, kwargs), not {type(result).__name__}")
            new_args, new_kwargs = result
        except Exception as exc:  # a user's sanitizer: never reaches the job, never leaks the arguments
            errors.record(Place.ARGS_SANITIZER, exc)
            return [SANITIZER_FAILED], SANITIZER_FAILED
        return new_args, new_kwargs


DEFAULT_POLICY = ArgumentPolicy(redactor=Redactor(DEFAULT_REDACT_KWARGS))
