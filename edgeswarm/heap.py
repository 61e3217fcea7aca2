"""A daemon's start-up objects, left out of the garbage collector's full collections.

CPython's full (generation 2) collection walks every object the collector tracks.
A daemon's start-up — its imports (qh3, wasmtime, numpy, pycrdt, ONNX Runtime...),
its modules and its tables — leaves ~100 000 of them that live as long as the
process: walking them took 41-58 ms on the 2-core dev VM, and the churn of messages
and frames set off such a walk every few seconds (at 10 000 MQTT messages/s, once
in a 5-second run): an event-loop pause that was the p99 of the MQTT loop (issue 19).
Once set up, a daemon calls :func:`freeze_startup_objects`: a full collection then
walks only what was made since (the largest collection in that run: 0.6 ms).

The objects frozen are never freed; they were going to live as long as the process.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["freeze_startup_objects"]

logger = logging.getLogger(__name__)


def freeze_startup_objects(process: str) -> int:
    """Collect once, then move every object left into the collector's permanent
    generation (``gc.freeze``); how many objects that generation holds now."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info(
        "start-up objects left out of garbage collection",
        extra={"daemon": process, "frozen_objects": frozen},
    )
    return frozen
