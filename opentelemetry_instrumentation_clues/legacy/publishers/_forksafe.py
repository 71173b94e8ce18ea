"""Run a hook in the child after ``os.fork()`` for every live publisher that needs one.

RQ forks a work horse per job. Locks held by another thread at fork time would stay held
forever in the child, and sender threads do not survive the fork, so publishers with
threads or locks re-initialise them here.
"""

from __future__ import annotations

import weakref
from typing import Protocol

from opentelemetry_instrumentation_clues.runtime import at_fork
from opentelemetry_instrumentation_clues.runtime.safety import Place, errors


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_live: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(publisher: ForkAware) -> None:
    # Registered with the first such publisher: a horse without one runs no hook of ours.
    at_fork.register("legacy publishers", after_in_child=_after_fork_in_child)
    _live.add(publisher)


def _after_fork_in_child() -> None:
    for publisher in list(_live):
        try:
            publisher._after_fork_in_child()
        except Exception as exc:
            errors.record(Place.LEGACY_FORK, exc, type(publisher).__name__)
