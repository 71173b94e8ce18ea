"""``clues monitor``: queue health (jobs by status, oldest job, workers) as OTel metrics.

Needs OpenTelemetry, rq and redis; the ``clues`` command imports it only when ``clues monitor`` runs.
"""
