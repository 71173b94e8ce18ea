"""OpenTelemetry instrumentation for RQ job lifecycles (a port of resque-clues). Work in progress."""
