"""The spool's SQLite file: its schema and versions, opening it, moving a damaged one aside.

Tables (``PRAGMA user_version = 3``; 16 KiB pages for new files)::

    spool(seq INTEGER PRIMARY KEY, payload BLOB, count INTEGER, checksum INTEGER)
    quarantine(seq INTEGER PRIMARY KEY, payload BLOB, count INTEGER, checksum INTEGER,
               reason TEXT, detail TEXT, at REAL)
    meta(key TEXT PRIMARY KEY, value INTEGER)   next_seq, dropped_batches, dropped_bytes,
                                                quarantined_batches, seq_epoch, sent_through

Version 1 had no ``count``; version 2 no ``checksum``, quarantine or epoch:
both are upgraded in place when opened (their rows keep a NULL checksum and
the file epoch 0). What the columns must satisfy is ``spool_records.py``.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from edgeswarm.storage import Schema, open_database, statements

__all__ = ["PAGE_SIZE", "SCHEMA", "move_aside", "open_spool_file"]

PAGE_SIZE = 16384
"""Page size of new spool files (existing files keep theirs)."""
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
SCHEMA = Schema(
    version=3,
    create=(
        "CREATE TABLE spool (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL,"
        " count INTEGER NOT NULL DEFAULT 0, checksum INTEGER)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        "INSERT INTO meta VALUES ('next_seq', 1), ('dropped_batches', 0), ('dropped_bytes', 0),"
        " ('quarantined_batches', 0), ('sent_through', 0)",
        _QUARANTINE,
    ),
    tables=frozenset({"spool", "meta"}),
    upgrades={2: statements(*_TO_VERSION_3)},
)
"""Version 2 stored each batch's observation count beside it (version 1 did not);
version 3 a checksum, the quarantine and the sequence epoch."""


def open_spool_file(
    path: Path,
    *,
    count_of: Callable[[bytes], int] | None,
    corrupt: Callable[[str], Exception],
    failed: Callable[[str], Exception],
) -> sqlite3.Connection:
    """The spool file at ``path``, created or upgraded to :data:`SCHEMA`.

    ``count_of`` counts the observations of a version-1 file's payloads (they
    count 0 without it). Raises ``corrupt(message)`` or ``failed(message)``.
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
        statements(*_TO_VERSION_3)(db)

    return open_database(
        path,
        dataclasses.replace(SCHEMA, upgrades={**SCHEMA.upgrades, 1: count_stored_batches}),
        page_size=PAGE_SIZE,
        synchronous="NORMAL",
        corrupt=corrupt,
        failed=failed,
    )


def move_aside(path: Path) -> Path:
    """Move a (damaged) spool file and its ``-wal``/``-shm`` aside; return where it went."""
    dest = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    n = 1
    while dest.exists():
        dest = path.with_name(f"{path.name}.corrupt-{int(time.time())}-{n}")
        n += 1
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            os.replace(companion, dest.with_name(dest.name + suffix))
    os.replace(path, dest)
    return dest
