"""The spool's SQLite index: its schema and versions, opening it, the statements the spool
runs on it, moving a damaged one aside.

Tables (``PRAGMA user_version = 4``; 4 KiB pages for new files)::

    spool(seq INTEGER PRIMARY KEY, payload BLOB, count INTEGER, checksum INTEGER,
          segment INTEGER, offset INTEGER, length INTEGER)
    quarantine(seq INTEGER PRIMARY KEY, payload BLOB, count INTEGER, checksum INTEGER,
               reason TEXT, detail TEXT, at REAL)
    meta(key TEXT PRIMARY KEY, value INTEGER)   next_seq, dropped_batches, dropped_bytes,
                                                quarantined_batches, seq_epoch, sent_through

A row of version 4 keeps its payload in a segment file beside the index
(``spool.db-segments/``, ``storage/segments.py``): ``payload`` is empty and
``segment``, ``offset``, ``length`` say where the bytes are. Rows written by
version 3 and earlier hold their payload inline (``segment`` NULL) and are
read from there until they are delivered.

Version 1 had no ``count``; version 2 no ``checksum``, quarantine or epoch;
version 3 kept every payload inline: all are upgraded in place when opened
(version 1 and 2 rows keep a NULL checksum and the file epoch 0; no row is
rewritten). What the columns must satisfy is ``spool_records.py``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from edgeswarm.storage import Schema, open_database, statements, transaction

from .spool_records import new_seq_epoch

__all__ = [
    "PAGE_SIZE",
    "SCHEMA",
    "WAL_LIMIT_BYTES",
    "IndexRow",
    "delete_ranges",
    "insert_group",
    "move_aside",
    "move_to_quarantine",
    "open_spool_file",
    "read_meta",
    "read_row",
    "set_meta",
]

PAGE_SIZE = 4096
"""Page size of new spool files (existing files keep theirs; version 3 files, which held
payloads inline, were made with 16 KiB pages)."""
WAL_LIMIT_BYTES = 16 << 20
"""WAL size past which the next commit finishes a checkpoint so that the WAL restarts."""
_QUARANTINE = (
    "CREATE TABLE quarantine (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
    " count INTEGER NOT NULL, checksum INTEGER, reason TEXT NOT NULL, detail TEXT NOT NULL,"
    " at REAL NOT NULL)"
)
_TO_VERSION_3 = (
    "ALTER TABLE spool ADD COLUMN checksum INTEGER",  # NULL: spooled before checksums
    _QUARANTINE,
    "INSERT INTO meta VALUES ('seq_epoch', 0), ('quarantined_batches', 0)",
    # an older file may have sent everything it numbered: assume it did
    "INSERT INTO meta SELECT 'sent_through', value - 1 FROM meta WHERE key = 'next_seq'",
)
_TO_VERSION_4 = (
    "ALTER TABLE spool ADD COLUMN segment INTEGER",  # NULL: the payload is inline
    "ALTER TABLE spool ADD COLUMN offset INTEGER",
    "ALTER TABLE spool ADD COLUMN length INTEGER",
)
SCHEMA = Schema(
    version=4,
    create=(
        "CREATE TABLE spool (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
        " count INTEGER NOT NULL DEFAULT 0, checksum INTEGER,"
        " segment INTEGER, offset INTEGER, length INTEGER)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO meta VALUES ('next_seq', 1), ('dropped_batches', 0), ('dropped_bytes', 0),"
        " ('quarantined_batches', 0), ('sent_through', 0)",
        _QUARANTINE,
    ),
    tables=frozenset({"spool", "meta"}),
    upgrades={
        2: statements(*_TO_VERSION_3, *_TO_VERSION_4),
        3: statements(*_TO_VERSION_4),
    },
)
"""Version 2 stored each batch's observation count beside it (version 1 did not);
version 3 a checksum, the quarantine and the sequence epoch; version 4 the payloads
in segment files."""


def open_spool_file(
    path: Path,
    *,
    count_of: Callable[[bytes], int] | None,
    synchronous: str,
    corrupt: Callable[[str], Exception],
    failed: Callable[[str], Exception],
) -> sqlite3.Connection:
    """The spool file at ``path``, created or upgraded to :data:`SCHEMA`.

    ``count_of`` counts the observations of a version-1 file's payloads (they
    count 0 without it); ``synchronous`` is the ``PRAGMA synchronous`` value.
    Automatic checkpoints are off. Raises ``corrupt(message)`` or ``failed(message)``.
    """

    def count_stored_batches(db: sqlite3.Connection) -> None:
        """Upgrade of a version-1 file: store each batch's count beside it, then as v2."""
        db.execute("ALTER TABLE spool ADD COLUMN count INTEGER NOT NULL DEFAULT 0")
        if count_of is not None:
            rows = db.execute("SELECT seq, payload FROM spool").fetchall()
            db.executemany(
                "UPDATE spool SET count = ? WHERE seq = ?",
                [(count_of(bytes(payload)), seq) for seq, payload in rows],
            )
        statements(*_TO_VERSION_3, *_TO_VERSION_4)(db)

    return open_database(
        path,
        dataclasses.replace(SCHEMA, upgrades={**SCHEMA.upgrades, 1: count_stored_batches}),
        page_size=PAGE_SIZE,
        synchronous=synchronous,
        # checkpoints run on a thread of their own (storage.Checkpointer)
        pragmas=("PRAGMA wal_autocheckpoint=0", f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}"),
        corrupt=corrupt,
        failed=failed,
    )


def move_aside(path: Path) -> Path:
    """Move a (damaged) spool file and its ``-wal``/``-shm`` and ``-segments`` aside; return
    where it went."""
    dest = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.corrupt-{int(time.time())}-{n}")
        n += 1
    for suffix in ("-wal", "-shm", "-segments"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, dest.with_name(dest.name + suffix))
    os.replace(path, dest)
    return dest


IndexRow = tuple[int, int, int, int | None, int, int]
"""``(seq, count, checksum, segment, offset, length)`` of a new row (payload in a segment)."""


def read_meta(db: sqlite3.Connection) -> dict[str, int]:
    """The ``meta`` table; a new file gets its sequence epoch first."""
    with transaction(db):
        db.execute("INSERT OR IGNORE INTO meta VALUES ('seq_epoch', ?)", (new_seq_epoch(),))
    return {str(k): int(v) for k, v in db.execute("SELECT key, value FROM meta").fetchall()}


def set_meta(db: sqlite3.Connection, key: str, value: int) -> None:
    """Commit ``meta[key] = value``."""
    with transaction(db):
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))


def insert_group(
    db: sqlite3.Connection,
    rows: list[IndexRow],
    *,
    next_seq: int,
    drop_through: int | None = None,
    dropped: tuple[int, int] = (0, 0),
) -> None:
    """One group commit: delete every row up to ``drop_through`` (``drop_oldest``: counted
    as ``dropped`` batches and bytes), insert ``rows``, move ``next_seq``."""
    with transaction(db):
        if drop_through is not None:
            db.execute("DELETE FROM spool WHERE seq <= ?", (drop_through,))
            db.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'dropped_batches'", (dropped[0],)
            )
            db.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'dropped_bytes'", (dropped[1],)
            )
        db.executemany(
            "INSERT INTO spool (seq, payload, count, checksum, segment, offset, length)"
            " VALUES (?, x'', ?, ?, ?, ?, ?)",
            rows,
        )
        db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (next_seq,))


def delete_ranges(db: sqlite3.Connection, ranges: list[tuple[int, int]]) -> None:
    """Delete the rows of seqs ``first..last`` of each range, in one transaction."""
    with transaction(db):
        db.executemany("DELETE FROM spool WHERE seq BETWEEN ? AND ?", ranges)


def read_row(
    db: sqlite3.Connection, seq: int
) -> tuple[bytes, int, int | None, int | None, int | None, int | None] | None:
    """``(inline payload, count, checksum, segment, offset, length)`` of row ``seq``."""
    row = db.execute(
        "SELECT payload, count, checksum, segment, offset, length FROM spool WHERE seq = ?",
        (seq,),
    ).fetchone()
    if row is None:
        return None
    return bytes(row[0]), int(row[1]), row[2], row[3], row[4], row[5]


def move_to_quarantine(
    db: sqlite3.Connection,
    seq: int,
    payload: bytes,
    count: int,
    checksum: int | None,
    reason: str,
    detail: str,
) -> None:
    """Move row ``seq`` to the quarantine table with its payload ``bytes``, and count it."""
    with transaction(db):
        db.execute(
            "INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?)",
            (seq, payload, count, checksum, reason, detail, time.time()),
        )
        db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'quarantined_batches'")
