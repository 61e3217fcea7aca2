"""The observation log's SQLite index: one small row per batch, and the commit point.

Schema (``PRAGMA user_version = 3``; 4 KiB pages: rows are ~60 bytes)::

    batches(edge_id TEXT, seq INTEGER, tick INTEGER, count INTEGER,
            payload BLOB, received_at REAL,
            segment INTEGER, offset INTEGER, length INTEGER, xxh3 INTEGER,
            PRIMARY KEY (edge_id, seq))

New rows have ``payload = x''`` and point into a segment (``segments.py``):
where the payload starts, its length and its XXH3-64 checksum. Rows with
``segment IS NULL`` hold their payload inline: rows of version 1 and 2 files
(inline payloads; version 1 in a WITHOUT ROWID table), which are upgraded in
place when opened (the four columns are added, no row is rewritten), and
empty payloads.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import xxhash

from edgeswarm.storage import Schema, open_database, statements, transaction

from .records import FsyncPolicy, LogCorruptError, LogOpenError

__all__ = ["COLUMNS", "PAGE_SIZE", "SCHEMA", "Row", "checksum", "insert_rows", "open_index"]

PAGE_SIZE = 4096
"""Page size of new log files (existing files keep theirs)."""
SEGMENT_COLUMNS = ("segment", "offset", "length", "xxh3")
COLUMNS = ("edge_id", "seq", "tick", "count", "payload", "received_at", *SEGMENT_COLUMNS)
_ADD_SEGMENT_COLUMNS = statements(
    *(f"ALTER TABLE batches ADD COLUMN {column} INTEGER" for column in SEGMENT_COLUMNS)
)
SCHEMA = Schema(
    version=3,
    create=(
        """
        CREATE TABLE batches (
            edge_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            tick INTEGER NOT NULL,
            count INTEGER NOT NULL,
            payload BLOB NOT NULL,
            received_at REAL NOT NULL,
            segment INTEGER,
            offset INTEGER,
            length INTEGER,
            xxh3 INTEGER,
            PRIMARY KEY (edge_id, seq)
        )
        """,
    ),
    tables=frozenset({"batches"}),
    upgrades={1: _ADD_SEGMENT_COLUMNS, 2: _ADD_SEGMENT_COLUMNS},  # inline payloads only
)
_INSERT = (
    f"INSERT OR IGNORE INTO batches ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
Row = tuple[str, int, int, int, bytes, float, int | None, int | None, int | None, int | None]
"""One index row, in :data:`COLUMNS` order."""


def checksum(payload: bytes) -> int:
    """XXH3-64 of ``payload`` as SQLite stores integers (signed 64-bit)."""
    value = xxhash.xxh3_64_intdigest(payload)
    return value - (1 << 64) if value >= 1 << 63 else value


def open_index(
    path: Path, *, fsync: FsyncPolicy, busy_timeout_s: float, wal_limit_bytes: int
) -> sqlite3.Connection:
    """The writer's connection to the index at ``path`` (created or upgraded as needed).

    Automatic checkpoints are off (the log runs them off the commit path) and
    the WAL is cut back to ``wal_limit_bytes`` when it restarts. Raises
    :class:`LogCorruptError` or :class:`LogOpenError`.
    """
    db = open_database(
        path,
        SCHEMA,
        page_size=PAGE_SIZE,
        synchronous=fsync.pragma,
        pragmas=("PRAGMA wal_autocheckpoint=0", f"PRAGMA journal_size_limit={wal_limit_bytes}"),
        busy_timeout_s=busy_timeout_s,
        check_same_thread=False,  # handed to the writer thread after setup
        corrupt=lambda message: LogCorruptError(message, path=path),
        failed=lambda message: LogOpenError(message, path=path),
    )
    columns = {row[1] for row in db.execute("PRAGMA table_info(batches)")}
    if not columns.issuperset(COLUMNS):
        db.close()
        raise LogCorruptError(f"foreign schema (batches{sorted(columns)})", path=path)
    return db


def insert_rows(db: sqlite3.Connection, rows: list[Row]) -> list[bool]:
    """Insert and commit ``rows`` in one transaction; which of them were new."""
    with transaction(db):
        cursor = db.executemany(_INSERT, rows)
        if cursor.rowcount == len(rows):
            return [True] * len(rows)
        # another connection wrote some of these keys: which rows are ours?
        return [
            db.execute(
                "SELECT 1 FROM batches WHERE edge_id = ? AND seq = ?"
                " AND received_at = ? AND segment IS ? AND offset IS ?",
                (row[0], row[1], row[5], row[6], row[7]),
            ).fetchone()
            is not None
            for row in rows
        ]
