"""Process-level machinery: error guards, fork safety, the worker's C environment, flushing, threads with a timeout."""
