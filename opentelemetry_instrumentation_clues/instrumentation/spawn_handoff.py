"""SpawnWorker: hand the attempt from the worker to a work horse that is a fresh interpreter.

A spawned horse inherits no memory, only the environment. The worker writes what
the horse needs to continue the job's trace (the context of its ``process`` span,
the event_hash and attempt number) into one environment variable just for the
spawn; the horse's ``perform {queue}`` span becomes a child of the worker's span.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span

from opentelemetry_instrumentation_clues import environment_variables as env
from opentelemetry_instrumentation_clues.config import Propagation
from opentelemetry_instrumentation_clues.instrumentation.job_trace import carrier_for

ENV_VAR = env.OTEL_PYTHON_CLUES_SPAWN_ATTEMPT


@dataclass(frozen=True)
class Handoff:
    job_id: str
    event_hash: str
    attempt: int
    carrier: dict[str, str]


def publish(job_id: str, event_hash: str, attempt: int, span: Span) -> None:
    os.environ[ENV_VAR] = json.dumps(
        {"job_id": job_id, "event_hash": event_hash, "attempt": attempt, "carrier": carrier_for(span, Propagation.LINK)}
    )


def withdraw() -> None:
    os.environ.pop(ENV_VAR, None)


def receive(job_id: str) -> Handoff | None:
    raw = os.environ.get(ENV_VAR)
    if not raw:
        return None
    data: Any = json.loads(raw)
    if not isinstance(data, dict) or data.get("job_id") != job_id:
        return None
    return Handoff(job_id, str(data["event_hash"]), int(data["attempt"]), dict(data.get("carrier") or {}))
