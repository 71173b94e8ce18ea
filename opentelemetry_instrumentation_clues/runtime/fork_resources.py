"""Re-detect a forked child's process-dependent resource without a thread pool.

In every forked child the SDK's providers (opentelemetry-sdk 1.45: tracer, logger and meter)
renew the resource attributes that name the process (``service.instance.id`` and any process
detector the user configured) through ``_get_process_dependent_resource``, which runs those
detectors in a new ``ThreadPoolExecutor``: two thread starts, waits and joins per provider in
every work horse, about 1.2 ms of each forked job before rq's code runs (docs/performance.md).

While clues is instrumented, the providers call an equivalent that runs the same detectors, in
the same order, in the forking thread: the same resource, the same handling of a detector that
raises (skipped with the SDK's warning, or raised with ``raise_on_error``). The one difference:
a detector slower than the SDK's 5 s timeout is not dropped; the SDK's call waits for it too
(its pool is joined), so a child is held up no longer than before. SDK versions without this
function (before 1.44), or whose function reads other names, are left as they are.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

_SDK_MODULES = ("opentelemetry.sdk.trace", "opentelemetry.sdk._logs._internal", "opentelemetry.sdk.metrics._internal")
_NAME = "_get_process_dependent_resource"
_sdk_logger = logging.getLogger("opentelemetry.sdk.resources")  # where the SDK warns about detectors
# The names the SDK's function uses (1.44, 1.45): a version whose function reads others may
# detect differently, and keeps its own.
_KNOWN_SHAPE = frozenset({"get_aggregated_resources", "_build_resource_detectors", "Resource", "get_empty"})

_originals: dict[str, tuple[Any, Any]] = {}  # SDK module name -> (module, its function), while installed


def install() -> None:
    """Take over in the SDK's provider modules imported so far (none is imported for it: the
    metrics SDK alone takes ~16 ms to import). Called again when a worker starts, by which
    time the SDK is set up."""
    resources = sys.modules.get("opentelemetry.sdk.resources")
    sdk_own = getattr(resources, _NAME, None)
    if sdk_own is None or frozenset(getattr(getattr(sdk_own, "__code__", None), "co_names", ())) != _KNOWN_SHAPE:
        return  # not set up yet, or an SDK that detects differently: keep its own
    for name in _SDK_MODULES:
        module = sys.modules.get(name)
        original = getattr(module, _NAME, None)
        if name not in _originals and original is sdk_own:
            _originals[name] = (module, original)
            setattr(module, _NAME, process_dependent_resource)


def uninstall() -> None:
    while _originals:
        module, original = _originals.popitem()[1]
        setattr(module, _NAME, original)


def process_dependent_resource() -> Any:
    """What the SDK's ``_get_process_dependent_resource`` returns, detected in this thread."""
    # Looked up, not imported: no import machinery in a child that has only just forked.
    resources = sys.modules["opentelemetry.sdk.resources"]
    merged = resources.Resource.get_empty()
    for detector in resources._build_resource_detectors():
        if not detector.is_process_dependent():
            continue
        try:
            detected = detector.detect()
        except Exception as exc:
            if detector.raise_on_error:
                raise
            _sdk_logger.warning("Exception %s in detector %s, ignoring", exc, detector)
            continue
        merged = merged.merge(detected)
    return merged
