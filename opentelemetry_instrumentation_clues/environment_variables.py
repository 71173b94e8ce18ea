"""Every environment variable clues reads: ``OTEL_PYTHON_CLUES_*``, each documented where it is used.

An ``instrument()`` keyword argument of the same name (lower case, without the prefix) wins over
the variable; see the package docstring and ``config.py``.
"""

OTEL_PYTHON_CLUES_PROPAGATION = "OTEL_PYTHON_CLUES_PROPAGATION"
"""``link`` (default), ``child`` or ``none``: how a job's trace relates to the enqueuing one."""

OTEL_PYTHON_CLUES_CAPTURE_ARGS = "OTEL_PYTHON_CLUES_CAPTURE_ARGS"
"""Whether a job's args and kwargs go on its events (default true)."""

OTEL_PYTHON_CLUES_MAX_VALUE_LENGTH = "OTEL_PYTHON_CLUES_MAX_VALUE_LENGTH"
"""Longest args/kwargs/metadata value and exception message (default 2048)."""

OTEL_PYTHON_CLUES_MAX_STACKTRACE_LENGTH = "OTEL_PYTHON_CLUES_MAX_STACKTRACE_LENGTH"
"""Longest ``exception.stacktrace`` (default 16384); the middle of a longer one is dropped."""

OTEL_PYTHON_CLUES_FLUSH_TIMEOUT_MILLIS = "OTEL_PYTHON_CLUES_FLUSH_TIMEOUT_MILLIS"
"""How long a work horse may flush what its job exported itself (default 2000)."""

OTEL_PYTHON_CLUES_PREPROCESSOR_TIMEOUT_MILLIS = "OTEL_PYTHON_CLUES_PREPROCESSOR_TIMEOUT_MILLIS"
"""How long the item preprocessor may take per job (default 1000)."""

OTEL_PYTHON_CLUES_REDACT_KWARGS = "OTEL_PYTHON_CLUES_REDACT_KWARGS"
"""Comma-separated keys whose values become ``[REDACTED]``; ``none`` turns redaction off."""

OTEL_PYTHON_CLUES_ARGS_SANITIZER = "OTEL_PYTHON_CLUES_ARGS_SANITIZER"
"""``package.module:function`` applied to a job's (func_name, args, kwargs) before redaction."""

OTEL_PYTHON_CLUES_ARGS_REPR = "OTEL_PYTHON_CLUES_ARGS_REPR"
"""Show arguments without a JSON form by ``repr()`` (time-limited) instead of by type name."""

OTEL_PYTHON_CLUES_SPAN_EVENTS = "OTEL_PYTHON_CLUES_SPAN_EVENTS"
"""Lifecycle events as span events as well as log records (default true)."""

OTEL_PYTHON_CLUES_PUBLISHER = "OTEL_PYTHON_CLUES_PUBLISHER"
"""The legacy JSON-line output: comma-separated ``stdout``, ``file://PATH``, ``tcp://``, ``udp://``."""

OTEL_PYTHON_CLUES_EVENT_MARSHALLER = "OTEL_PYTHON_CLUES_EVENT_MARSHALLER"
"""``package.module:function`` turning a legacy event into its line (default: the JSON marshaller)."""

OTEL_PYTHON_CLUES_ITEM_PREPROCESSOR = "OTEL_PYTHON_CLUES_ITEM_PREPROCESSOR"
"""``package.module:function`` adding metadata to a job at enqueue."""

OTEL_PYTHON_CLUES_SPAWN_ATTEMPT = "OTEL_PYTHON_CLUES_SPAWN_ATTEMPT"
"""Set by clues, not by users: a SpawnWorker's attempt, handed to the spawned horse."""

OTEL_PYTHON_CLUES_PROGRESS_DELAY = "OTEL_PYTHON_CLUES_PROGRESS_DELAY"
"""``clues stats``/``trace``: seconds before the progress indicator appears (default 0.5).
The older name ``CLUES_PROGRESS_DELAY`` is still read when this one is unset."""

CLUES_PROGRESS_DELAY_OLD_NAME = "CLUES_PROGRESS_DELAY"
