"""``clues demo`` and the compose stack's producer: a realistic mix of jobs on an instrumented worker.

Standard library at import time; rq and redis are imported when a demo runs.
"""
