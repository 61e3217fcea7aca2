"""The replication columns of ``modules.db``: this registry's replica id, the stamp of each
deployment record, and applying a peer's record (SQL for :class:`.store.ModuleStore`).

- ``replica``: one row, the id this registry stamps its own changes with (random,
  made when the file is created or upgraded to schema 2);
- ``stamps``: per module, the :class:`.replica.Stamp` of its deployment record.
  A record without a row has the stamp ``(0, <this replica>)``: never changed
  since replication existed.
"""

from __future__ import annotations

import sqlite3
import uuid

from .replica import DeploymentRecord, Stamp

REPLICA_TABLE = "CREATE TABLE IF NOT EXISTS replica (id TEXT NOT NULL)"
STAMPS_TABLE = """CREATE TABLE IF NOT EXISTS stamps (
    name TEXT PRIMARY KEY,
    counter INTEGER NOT NULL,
    origin TEXT NOT NULL
)"""


def replica_id(db: sqlite3.Connection) -> str:
    """This registry's replica id, made on first use (in its own transaction)."""
    row = db.execute("SELECT id FROM replica").fetchone()
    if row is not None:
        return str(row[0])
    db.execute("BEGIN IMMEDIATE")
    try:
        row = db.execute("SELECT id FROM replica").fetchone()
        if row is None:
            db.execute("INSERT INTO replica VALUES (?)", (uuid.uuid4().hex[:16],))
            row = db.execute("SELECT id FROM replica").fetchone()
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return str(row[0])


def stamp_of(db: sqlite3.Connection, name: str, replica: str) -> Stamp:
    row = db.execute("SELECT counter, origin FROM stamps WHERE name = ?", (name,)).fetchone()
    return Stamp(0, replica) if row is None else Stamp(int(row[0]), str(row[1]))


def bump(db: sqlite3.Connection, name: str, replica: str) -> None:
    """A local change of ``name``'s deployment: its stamp becomes (counter + 1, replica)."""
    counter = stamp_of(db, name, replica).counter + 1
    db.execute("INSERT OR REPLACE INTO stamps VALUES (?, ?, ?)", (name, counter, replica))


def records(db: sqlite3.Connection, replica: str) -> list[DeploymentRecord]:
    """Every deployment record with its stamp, by name."""
    rows = db.execute(
        "SELECT d.name, d.version, d.previous, d.rollout, d.plan, s.counter, s.origin "
        "FROM deployments d LEFT JOIN stamps s ON s.name = d.name ORDER BY d.name"
    ).fetchall()
    return [
        DeploymentRecord(
            n, v, p, r, plan, Stamp(0, replica) if c is None else Stamp(int(c), str(o))
        )
        for n, v, p, r, plan, c, o in rows
    ]


def write(db: sqlite3.Connection, record: DeploymentRecord, now: float) -> None:
    """Store ``record`` and its stamp as they are (inside the caller's transaction)."""
    db.execute(
        "INSERT OR REPLACE INTO deployments VALUES (?, ?, ?, ?, ?, ?)",
        (record.name, record.version, record.previous, record.rollout, record.plan, now),
    )
    db.execute(
        "INSERT OR REPLACE INTO stamps VALUES (?, ?, ?)",
        (record.name, record.stamp.counter, record.stamp.origin),
    )
