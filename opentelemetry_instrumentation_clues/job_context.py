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

from .safety import errors

META_KEY = "clues"
FORMAT_VERSION = 1
_EVENT_HASH = re.compile(r"^[0-9a-f]{32}$")


class ForeignCluesData(ValueError):
    """``job.meta['clues']`` holds something this version does not understand."""


@dataclass
class JobClues:
    event_hash: str
    carrier: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    attempt: int = 0  # attempts dequeued so far

    def to_meta(self) -> dict[str, Any]:
        return {
            "v": FORMAT_VERSION,
            "event_hash": self.event_hash,
            "carrier": self.carrier,
            "metadata": self.metadata,
            "attempt": self.attempt,
        }


def read(job: Any) -> JobClues | None:
    """The job's clues data, or None when it has none (or none we can trust)."""
    meta = getattr(job, "meta", None)
    if not isinstance(meta, dict) or META_KEY not in meta:
        return None
    try:
        return _parse(meta[META_KEY])
    except ForeignCluesData as exc:
        errors.record("reading job.meta['clues']", exc)
        return None


def write(job: Any, clues: JobClues) -> None:
    if not isinstance(getattr(job, "meta", None), dict):
        job.meta = {}
    job.meta[META_KEY] = clues.to_meta()


def _parse(raw: Any) -> JobClues:
    if not isinstance(raw, dict):
        raise ForeignCluesData(f"expected a dict, found {type(raw).__name__}")
    event_hash = raw.get("event_hash")
    if not isinstance(event_hash, str) or not _EVENT_HASH.match(event_hash):
        raise ForeignCluesData(f"event_hash is not 32 lowercase hex characters: {event_hash!r}")
    carrier = raw.get("carrier") or {}
    if not isinstance(carrier, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in carrier.items()):
        raise ForeignCluesData("carrier is not a dict of strings")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ForeignCluesData("metadata is not a dict")
    attempt = raw.get("attempt", 0)
    if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 0:
        raise ForeignCluesData(f"attempt is not a non-negative int: {attempt!r}")
    return JobClues(event_hash=event_hash, carrier=dict(carrier), metadata=dict(metadata), attempt=attempt)
