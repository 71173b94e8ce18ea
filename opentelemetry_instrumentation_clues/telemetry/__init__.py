"""Attribute names, the job's facts, and the one emitter of spans, span events, log records and metrics."""
