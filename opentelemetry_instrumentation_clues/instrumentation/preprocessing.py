"""The seed's item preprocessor: decorate a job with metadata when it is first enqueued.

``item_preprocessor(queue_name, item)`` receives
``{'class': func_name, 'args': [...], 'kwargs': {...}, 'clues_metadata': {}}``;
whatever it puts into ``item['clues_metadata']`` shows on every later event of
the job (span and log attributes ``clues.metadata.<key>``, legacy ``metadata``).
Changing ``args``/``kwargs`` in the item does not change the job.

It runs off the enqueuing thread with a copy of its contextvars (so a
contextvar-based "current customer" is visible; a plain thread-local is not),
with a time limit, and its errors never reach the enqueue.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from opentelemetry_instrumentation_clues.runtime.safety import Place, errors
from opentelemetry_instrumentation_clues.runtime.threads import TimeLimitedCaller
from opentelemetry_instrumentation_clues.values.converter import bounded_json, type_label

ItemPreprocessor = Callable[[str, dict[str, Any]], Any]


class MetadataNotADict(TypeError):
    pass


class Preprocessing:
    def __init__(self, preprocessor: ItemPreprocessor, timeout: float) -> None:
        self.preprocessor = preprocessor
        self._caller = TimeLimitedCaller(Place.LEGACY_PREPROCESSOR, timeout)

    def metadata_for(self, queue_name: str, job: Any) -> dict[str, Any]:
        try:
            item: dict[str, Any] = {
                "class": job.func_name,
                "args": list(job.args),
                "kwargs": dict(job.kwargs),
                "clues_metadata": {},
            }
        except Exception as exc:
            errors.record(Place.LEGACY_PREPROCESSOR, exc)
            return {}
        if not self._caller.call(self.preprocessor, queue_name, item):
            return {}
        metadata = item.get("clues_metadata")
        if not isinstance(metadata, dict):
            errors.record(Place.LEGACY_PREPROCESSOR, MetadataNotADict("item['clues_metadata'] must stay a dict"))
            return {}
        return {_key_text(key): storable(value) for key, value in dict.items(metadata)}


def _key_text(key: Any) -> str:
    """A metadata key as text; str() only of builtin scalars (another type's __str__ is user code)."""
    return str(key) if type(key) in (str, bool, int, float, type(None)) else type_label(key)


# Metadata values are cut at max_value_length when they go on events; this only keeps job.meta small.
STORED_VALUE_LIMIT = 65536


def storable(value: Any) -> Any:
    """A value that any rq serializer (pickle or JSON) can save in job.meta.

    Runs on the enqueuing thread, so no user code: what is not plain JSON data is
    converted by :func:`bounded_json` (objects spelled by type name, never ``repr``)."""
    if value is None or type(value) in (str, bool, int, float):
        return value
    try:
        return json.loads(bounded_json(value, STORED_VALUE_LIMIT))
    except ValueError:  # pragma: no cover - bounded_json always returns valid JSON
        return type_label(value)
