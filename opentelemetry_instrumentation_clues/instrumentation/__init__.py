"""The rq patch layer: hooks on rq's enqueue and worker paths, an attempt's lifecycle, the horse hand-off.

Arrows: instrumentation → telemetry (job facts, the emitter) → the SDK; never into ``legacy``, ``cli`` or ``demo``.
"""
