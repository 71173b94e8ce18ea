"""The one place clues registers handlers with ``os.register_at_fork``.

Each user names its hooks once (fork safety of the SDK's exporters, the worker's C environment,
the legacy publishers' threads and locks); registering a name again does nothing, since Python
offers no way to unregister. Registration happens when the user first asks, so its order among
the SDK's own fork handlers is what it always was: ``before`` hooks run in reverse order of
registration, the ``after_*`` hooks in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable

_registered: set[str] = set()


def register(
    name: str,
    *,
    before: Callable[[], None] | None = None,
    after_in_parent: Callable[[], None] | None = None,
    after_in_child: Callable[[], None] | None = None,
) -> bool:
    """Register ``name``'s fork hooks once; False where there is no fork (Windows) or already done."""
    if name in _registered or not hasattr(os, "register_at_fork"):
        return False
    hooks = {"before": before, "after_in_parent": after_in_parent, "after_in_child": after_in_child}
    os.register_at_fork(**{when: hook for when, hook in hooks.items() if hook is not None})
    _registered.add(name)
    return True
