"""The clues data a job carries in ``job.meta`` between processes.

It is written into ``job.meta`` *before* rq saves the job, so it travels in the
same Redis write as the job itself: no extra round trip. Anything else found
under the key (an older format, another tool's data, hand-edited meta) is
ignored with one warning and never breaks the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from opentelemetry_instrumentation_clues.config import CluesConfig
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.telemetry.facts import JobFacts

META_KEY = "clues"
FORMAT_VERSION = 1
_EVENT_HASH = re.compile(r"[0-9a-f]{32}")


class ForeignCluesData(ValueError):
    """``job.meta['clues']`` holds something this version does not understand."""


@dataclass
class JobClues:
    event_hash: str
    carrier: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0  # attempts dequeued so far
    # ``attempt`` when a send last wrote this data. The worker counts an attempt in the job's
    # memory only and rq saves a failure without job.meta, so a stored attempt equal to this one
    # means the attempt that followed the send was never stored (see EnqueueHooks.requeue).
    # None: written before clues kept it.
    sent_at_attempt: int | None = None

    def to_meta(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "event_hash": self.event_hash,
            "carrier": self.carrier,
            "metadata": self.metadata,
            "attempt": self.attempt,
            **({} if self.sent_at_attempt is None else {"sent_at_attempt": self.sent_at_attempt}),
        }


def read(job: Any) -> JobClues | None:
    """The job's clues data, or None when it has none (or none we can trust).

    Never raises. Foreign data — ``job.meta`` that is not a dict or that rq could not
    deserialise, ``meta['clues']`` of another shape or version — is reported once per
    process (counted every time) and the job carries on as if it had none: it gets a
    fresh event_hash.
    """
    try:
        meta = getattr(job, "meta", None)
        if meta is None:
            return None
        if not isinstance(meta, dict):
            raise ForeignCluesData(f"job.meta is a {type(meta).__name__}, not a dict")
        if META_KEY not in meta:
            if getattr(job, "_unreadable_meta", None) is not None:  # rq >= 2.x keeps what it could not load
                raise ForeignCluesData("rq could not deserialise job.meta")
            return None
        return _parse(meta[META_KEY])
    except ForeignCluesData as exc:
        errors.record(Place.JOB_META, exc)
    except Exception as exc:  # a dict subclass or a value that misbehaves when read
        errors.record(Place.JOB_META, ForeignCluesData(f"unreadable ({type(exc).__name__}: {exc})"))
    return None


def has_metadata(job: Any) -> bool:
    """Whether the job's clues data may hold metadata: False only when it surely holds none.

    A quick look for the end of an attempt (its runtime metadata), which :func:`read` then
    parses in full; exact ``dict`` types only, so no user code runs."""
    meta = getattr(job, "meta", None)
    raw = meta.get(META_KEY) if type(meta) is dict else None
    return type(raw) is not dict or bool(raw.get("metadata", True))


def write(job: Any, clues: JobClues) -> None:
    if not isinstance(getattr(job, "meta", None), dict):
        job.meta = {}
    job.meta[META_KEY] = clues.to_meta()


def _parse(raw: Any) -> JobClues:
    if not isinstance(raw, dict):
        raise ForeignCluesData(f"expected a dict, found {type(raw).__name__}")
    version = raw.get("v", FORMAT_VERSION)  # data written before "v" existed is version 1
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ForeignCluesData(f"unknown format version {_short(version)}")
    # A newer version keeps the version-1 keys, so it is read as far as it is understood.
    event_hash = raw.get("event_hash")
    if isinstance(event_hash, str):
        event_hash = event_hash.lower()
    if not isinstance(event_hash, str) or not _EVENT_HASH.fullmatch(event_hash):
        raise ForeignCluesData(f"event_hash is not 32 hex characters: {_short(event_hash)}")
    carrier = raw.get("carrier") or {}
    if not isinstance(carrier, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in carrier.items()):
        raise ForeignCluesData("carrier is not a dict of strings")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ForeignCluesData(f"metadata is a {type(metadata).__name__}, not a dict")
    attempt = raw.get("attempt", 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise ForeignCluesData(f"attempt is not a non-negative int: {_short(attempt)}")
    sent_at_attempt = raw.get("sent_at_attempt")
    if sent_at_attempt is not None and (
        not isinstance(sent_at_attempt, int) or isinstance(sent_at_attempt, bool) or sent_at_attempt < 0
    ):
        raise ForeignCluesData(f"sent_at_attempt is not a non-negative int: {_short(sent_at_attempt)}")
    return JobClues(
        event_hash=event_hash,
        sent_at_attempt=sent_at_attempt,
        carrier=dict(carrier),
        metadata={key if isinstance(key, str) else str(key): value for key, value in metadata.items()},
        attempt=int(attempt),
    )


def _short(value: Any) -> str:
    """A repr for an error message: foreign data can be huge or refuse repr()."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:80] + "…"


def facts_for(job: Any, queue_name: str, clues: JobClues, config: CluesConfig) -> JobFacts:
    """The job's facts for its events in this process, as the settings say."""
    return JobFacts.build(job, queue_name, clues.event_hash, clues.attempt, clues.metadata, config)
