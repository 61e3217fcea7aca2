"""The observation log's SQLite index: one small row per batch, and the commit point.

Schema (``PRAGMA user_version = 4``; 4 KiB pages: rows are ~70 bytes)::

    batches(edge_id TEXT, seq INTEGER, tick INTEGER, count INTEGER,
            payload BLOB, received_at REAL,
            segment INTEGER, offset INTEGER, length INTEGER, xxh3 INTEGER,
            row_xxh3 INTEGER,
            PRIMARY KEY (edge_id, seq))
    epochs(edge_id TEXT, seq_epoch INTEGER, base INTEGER, registered_at REAL,
           PRIMARY KEY (edge_id, seq_epoch))         (``holdings.py``)

``row_xxh3`` is the XXH3-64 of the row itself (:func:`row_checksum`: every
column but ``received_at``), so that a flipped bit in a stored ``seq`` or
``count`` is found where the row is read (``reader.py``, ``verify.py``) like
one in a payload; rows written before version 4 have none (NULL).

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

from .holdings import EPOCHS_TABLE
from .records import FsyncPolicy, LogCorruptError, LogOpenError, LogRecord, LogSeqConflict

__all__ = [
    "COLUMNS",
    "PAGE_SIZE",
    "SCHEMA",
    "Row",
    "checksum",
    "conflicts",
    "index_row",
    "insert_rows",
    "open_index",
    "row_checksum",
]

PAGE_SIZE = 4096
"""Page size of new log files (existing files keep theirs)."""
SEGMENT_COLUMNS = ("segment", "offset", "length", "xxh3")
COLUMNS = (
    "edge_id",
    "seq",
    "tick",
    "count",
    "payload",
    "received_at",
    *SEGMENT_COLUMNS,
    "row_xxh3",
)
_TO_VERSION_4 = ("ALTER TABLE batches ADD COLUMN row_xxh3 INTEGER", EPOCHS_TABLE)
_ADD_SEGMENT_COLUMNS = (
    *(f"ALTER TABLE batches ADD COLUMN {column} INTEGER" for column in SEGMENT_COLUMNS),
)
SCHEMA = Schema(
    version=4,
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
            row_xxh3 INTEGER,
            PRIMARY KEY (edge_id, seq)
        )
        """,
        EPOCHS_TABLE,
    ),
    tables=frozenset({"batches"}),
    upgrades={
        1: statements(*_ADD_SEGMENT_COLUMNS, *_TO_VERSION_4),  # inline payloads only
        2: statements(*_ADD_SEGMENT_COLUMNS, *_TO_VERSION_4),
        3: statements(*_TO_VERSION_4),
    },
)
_INSERT = (
    f"INSERT OR IGNORE INTO batches ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
Row = tuple[str, int, int, int, bytes, float, int | None, int | None, int | None, int | None, int]
"""One index row, in :data:`COLUMNS` order."""


def checksum(payload: bytes) -> int:
    """XXH3-64 of ``payload`` as SQLite stores integers (signed 64-bit)."""
    return _signed(xxhash.xxh3_64_intdigest(payload))


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def row_checksum(
    edge_id: str,
    seq: int,
    tick: int,
    count: int,
    payload: bytes,
    segment: int | None,
    offset: int | None,
    length: int | None,
    xxh3: int | None,
) -> int:
    """XXH3-64 of an index row (every column but ``received_at``), signed like SQLite's."""
    fields = f"{edge_id}\0{seq}\0{tick}\0{count}\0{segment}\0{offset}\0{length}\0{xxh3}\0"
    # UTF-8, strict: an edge id SQLite cannot bind (a lone surrogate) fails here, with the
    # error the bind would raise; every id SQLite holds encodes as it always did
    digest = xxhash.xxh3_64(fields.encode())
    digest.update(payload)
    return _signed(digest.intdigest())


def index_row(
    record: LogRecord, where: tuple[int | None, int | None, int | None, int | None]
) -> Row:
    """The index row of ``record`` whose payload is ``where`` (segment, offset, length,
    xxh3; all None: an empty payload, inline), with its own checksum."""
    r = record
    own = row_checksum(r.edge_id, r.seq, r.tick, r.count, b"", *where)
    return (r.edge_id, r.seq, r.tick, r.count, b"", r.received_at, *where, own)


def open_index(
    path: Path,
    *,
    fsync: FsyncPolicy,
    busy_timeout_s: float,
    wal_limit_bytes: int,
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


def conflicts(
    db: sqlite3.Connection, duplicates: list[LogRecord], written: list[LogRecord]
) -> dict[tuple[str, int], LogSeqConflict]:
    """The ``duplicates`` (records whose key was already held) whose payload differs from
    the one stored, or written just before in the same group, under their key."""
    if not duplicates:
        return {}
    first = {(r.edge_id, r.seq): checksum(r.payload) for r in written}
    found = {}
    for r in duplicates:
        key = (r.edge_id, r.seq)
        stored = first.get(key)
        if stored is None:
            row = db.execute(
                "SELECT xxh3, payload FROM batches WHERE edge_id = ? AND seq = ?", key
            ).fetchone()
            if row is None:
                continue
            stored = row[0] if row[0] is not None else checksum(bytes(row[1]))
        if stored != checksum(r.payload):
            found[key] = LogSeqConflict(
                f"{r.edge_id!r} seq {r.seq}: another batch with other bytes is stored under"
                " this number",
                edge_id=r.edge_id,
                seq=r.seq,
            )
    return found
