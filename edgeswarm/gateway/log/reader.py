"""Reading committed batches back, every row and payload checked against its checksum.

:func:`read_records` reads through its own read-only connection (a WAL
snapshot taken at the first ``next()``) and its own segment descriptors, so
it never blocks the writer and may run on any thread.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from edgeswarm.storage import SegmentFiles

from .index import checksum, row_checksum
from .records import LogRecord, LogRecordCorrupt

__all__ = ["read_records"]


def read_records(
    path: Path, segments: SegmentFiles, edge_id: str, from_seq: int = 0
) -> Iterator[LogRecord]:
    """Committed batches of ``edge_id`` with ``seq >= from_seq``, in seq order.

    Raises :class:`LogRecordCorrupt` at a row that fails its own checksum
    (``row_xxh3``; rows older than index version 4 have none) or a payload whose
    bytes are short or fail theirs.
    """
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    current: tuple[int, int, Path] | None = None  # segment last read from: number, fd, file
    try:
        cursor = db.execute(
            "SELECT edge_id, seq, tick, count, payload, received_at, segment, offset, length,"
            " xxh3, row_xxh3 FROM batches WHERE edge_id = ? AND seq >= ? ORDER BY seq",
            (edge_id, from_seq),
        )
        for row in cursor:
            edge, seq, tick, count, inline, received_at, segment, offset, length, xxh3, own = row
            if own is not None and own != row_checksum(
                edge, seq, tick, count, bytes(inline), segment, offset, length, xxh3
            ):
                raise LogRecordCorrupt(
                    "index row checksum mismatch",
                    edge_id=edge,
                    seq=seq,
                    segment=segment or 0,
                    offset=offset or 0,
                    path=path,
                )
            if segment is None:
                yield LogRecord(edge, seq, tick, count, bytes(inline), received_at)
                continue
            if current is None or current[0] != segment:
                if current is not None:
                    os.close(current[1])
                    current = None
                segment_path = segments.path(segment)
                try:
                    current = (segment, os.open(segment_path, os.O_RDONLY), segment_path)
                except FileNotFoundError as exc:
                    raise LogRecordCorrupt(
                        "segment file missing",
                        edge_id=edge,
                        seq=seq,
                        segment=segment,
                        offset=offset,
                        path=segment_path,
                    ) from exc
            payload = os.pread(current[1], length, offset)
            if len(payload) != length or checksum(payload) != xxh3:
                raise LogRecordCorrupt(
                    f"{len(payload)} of {length} bytes"
                    if len(payload) != length
                    else "checksum mismatch",
                    edge_id=edge,
                    seq=seq,
                    segment=segment,
                    offset=offset,
                    path=current[2],
                )
            yield LogRecord(edge, seq, tick, count, payload, received_at)
    finally:
        if current is not None:
            os.close(current[1])
        db.close()
