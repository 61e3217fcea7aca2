"""Opening the observation log after a crash: segments and committed rows made to agree.

Recovery at open, under the segment directory's lock (one ``ObservationLog``
per file). Segment bytes no committed row references (a group killed between
``writev`` and COMMIT) are cut off; rows whose bytes are missing (a segment
shorter than its rows say, or gone: only after an OS crash under
``fsync=normal``/``off``, or tampering) are deleted, logged as a warning and
counted in ``LogStats.lost_on_open``.

What the log then holds per edge is rebuilt by ``holdings.py``.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from edgeswarm.storage import SegmentFiles, transaction

__all__ = ["recover_segments"]

logger = logging.getLogger("edgeswarm.gateway")


def _segment_ends(db: sqlite3.Connection) -> dict[int, int]:
    """Segment number -> end of the last byte a committed row references in it."""
    rows = db.execute(
        "SELECT segment, max(offset + length) FROM batches"
        " WHERE segment IS NOT NULL GROUP BY segment"
    )
    return {int(segment): int(end) for segment, end in rows}


def recover_segments(
    db: sqlite3.Connection, segments: SegmentFiles, *, path: Path, sync: bool
) -> int:
    """Make the segment files and the committed rows agree; the number of rows deleted.

    ``sync``: make the cut of uncommitted bytes durable (every policy but ``off``).
    """
    sizes = segments.sizes()
    ends = _segment_ends(db)
    short = segments.missing(ends, sizes)
    lost = 0
    if short:
        with transaction(db):
            for segment, size in short.items():
                if size is None:  # the file is gone
                    cursor = db.execute("DELETE FROM batches WHERE segment = ?", (segment,))
                else:
                    cursor = db.execute(
                        "DELETE FROM batches WHERE segment = ? AND offset + length > ?",
                        (segment, size),
                    )
                lost += cursor.rowcount
        logger.warning(
            "observation log records lost: their segment bytes are missing",
            extra={"lost": lost, "segments": sorted(short), "path": str(path)},
        )
        ends = _segment_ends(db)
    newest = max(ends, default=0)
    dropped = segments.resume(newest, ends.get(newest, 0), sizes, sync=sync)
    if dropped:
        logger.info(
            "observation log dropped uncommitted segment bytes",
            extra={"bytes": dropped, "path": str(path)},
        )
    return lost
