"""A full disk under the spool holds the producer: :func:`append_when_room` retries an
append that found no room (:class:`~edgeswarm.edge.spool.SpoolDiskFull`; nothing of the
failed try stays) after each ``wait_room``, logging when the wait starts and ends."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from .spool import Spool, SpoolDiskFull

__all__ = ["append_when_room"]

logger = logging.getLogger("edgeswarm.edge")


async def append_when_room(
    spool: Spool,
    group: Sequence[tuple[int, bytes, int]],
    wait_room: Callable[[], Awaitable[None]],
) -> tuple[tuple[int, ...], bool]:
    """``spool.append_many(group)``, waiting while the disk is full. Returns what the
    append returned (seqs dropped to make room) and whether it had to wait."""
    full_since: float | None = None
    while True:
        try:
            dropped = spool.append_many(group)
        except SpoolDiskFull as exc:
            if full_since is None:
                full_since = time.monotonic()
                logger.warning(
                    "spool disk full; the edge waits for room",
                    extra={"spool": str(spool.path), "error": str(exc), "spooled": len(spool)},
                )
            await wait_room()
            continue
        if full_since is not None:
            waited_s = round(time.monotonic() - full_since, 3)
            logger.info(
                "spool has room again", extra={"spool": str(spool.path), "waited_s": waited_s}
            )
        return dropped, full_since is not None
