"""``python -m opentelemetry_instrumentation_clues.cli``: the ``clues`` command."""

import sys

from opentelemetry_instrumentation_clues.cli import main

sys.exit(main())
