"""What the observation log holds, rebuilt when it opens, after a crash too.

Recovery at open, under the segment directory's lock (one ``ObservationLog``
per file). Segment bytes no committed row references (a group killed between
``writev`` and COMMIT) are cut off; rows whose bytes are missing (a segment
shorter than its rows say, or gone: only after an OS crash under
``fsync=normal``/``off``, or tampering) are deleted, logged as a warning and
counted in ``LogStats.lost_on_open``.

Per-edge holdings (:class:`EdgeState`) are not stored: :func:`load_edges`
rebuilds them from the index, and the writer keeps them up to date in memory
after each commit.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from edgeswarm.storage import transaction

from .records import EdgeAggregate, LogRecord
from .segments import SegmentFiles

__all__ = ["EdgeState", "load_edges", "recover_segments"]

logger = logging.getLogger("edgeswarm.gateway")


@dataclass(slots=True)
class EdgeState:
    """What the log holds for one edge: totals, and which sequence numbers."""

    batches: int = 0
    observations: int = 0
    bytes: int = 0
    max_seq: int = 0
    high_water: int = 0
    above: set[int] = field(default_factory=set)
    """Stored seqs greater than ``high_water + 1`` (the gaps' far side)."""
    below: set[int] = field(default_factory=set)
    """Stored seqs below 1 (edges count from 1; kept so :meth:`holds` is exact)."""

    def add(self, record: LogRecord) -> None:
        """``record`` was committed."""
        self.batches += 1
        self.observations += record.count
        self.bytes += len(record.payload)
        self.max_seq = max(self.max_seq, record.seq)
        if record.seq == self.high_water + 1:
            self.high_water += 1
            while self.high_water + 1 in self.above:
                self.high_water += 1
                self.above.discard(self.high_water)
        elif record.seq > self.high_water + 1:
            self.above.add(record.seq)
        elif record.seq < 1:
            self.below.add(record.seq)

    def holds(self, seq: int) -> bool:
        """Whether ``seq`` is committed."""
        if seq > self.high_water:
            return seq in self.above
        return seq >= 1 or seq in self.below

    def snapshot(self, edge_id: str) -> EdgeAggregate:
        """The public view of this state."""
        return EdgeAggregate(
            edge_id, self.batches, self.observations, self.bytes, self.max_seq, self.high_water
        )


def load_edges(db: sqlite3.Connection) -> dict[str, EdgeState]:
    """Every edge's state, from the committed index rows."""
    edges = {}
    rows = db.execute(
        "SELECT edge_id, count(*), total(count), total(coalesce(length, length(payload))),"
        " max(seq) FROM batches GROUP BY edge_id"
    ).fetchall()
    for edge_id, batches, observations, nbytes, max_seq in rows:
        state = EdgeState(int(batches), int(observations), int(nbytes), int(max_seq))
        # First gap: the first row (in seq order, from 1) whose seq != its rank.
        gap = db.execute(
            "SELECT min(rn) - 1 FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS rn"
            " FROM batches WHERE edge_id = ? AND seq >= 1) WHERE seq != rn",
            (edge_id,),
        ).fetchone()[0]
        if gap is None:
            gap = db.execute(
                "SELECT count(*) FROM batches WHERE edge_id = ? AND seq >= 1", (edge_id,)
            ).fetchone()[0]
        state.high_water = int(gap)
        for (seq,) in db.execute(
            "SELECT seq FROM batches WHERE edge_id = ? AND (seq > ? OR seq < 1)",
            (edge_id, state.high_water + 1),
        ):
            (state.above if seq > 0 else state.below).add(int(seq))
        edges[edge_id] = state
    return edges


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
    short = {s: sizes.get(s) for s, end in ends.items() if sizes.get(s, -1) < end}
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
