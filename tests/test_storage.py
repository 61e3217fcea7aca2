"""The SQLite opening every durable file shares: schema versions, upgrades, foreign files."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.gateway.agent_store import AgentStore, AgentStoreError
from edgeswarm.gateway.peers import PeerRegistry, PeerRegistryError
from edgeswarm.registry.errors import RegistryStoreError
from edgeswarm.registry.store import ModuleStore
from edgeswarm.storage import Schema, open_database, statements
from edgeswarm.storage.sqlite import Upgrade


class CorruptError(Exception):
    pass


class FailedError(Exception):
    pass


def schema(upgrades: dict[int, Upgrade] | None = None) -> Schema:
    return Schema(
        version=2,
        create=("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT, w INTEGER)",),
        tables=frozenset({"t"}),
        upgrades=upgrades or {1: statements("ALTER TABLE t ADD COLUMN w INTEGER")},
    )


def open_(path: Path, kind: Schema | None = None) -> sqlite3.Connection:
    return open_database(
        path,
        kind or schema(),
        page_size=4096,
        synchronous="NORMAL",
        corrupt=CorruptError,
        failed=FailedError,
    )


def version_of(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def test_a_new_file_gets_the_schema_in_wal_mode(tmp_path: Path) -> None:
    db = open_(tmp_path / "x.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("INSERT INTO t VALUES (1, 'a', 2)")
    db.close()
    assert version_of(tmp_path / "x.db") == 2


def test_an_older_version_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); PRAGMA user_version=1;")
    old.execute("INSERT INTO t VALUES (1, 'kept')")
    old.commit()
    old.close()
    db = open_(path)
    assert db.execute("SELECT k, v, w FROM t").fetchall() == [(1, "kept", None)]
    db.close()
    assert version_of(path) == 2


def test_a_failed_upgrade_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT); PRAGMA user_version=1;")
    old.close()
    broken = schema({1: statements("ALTER TABLE t ADD COLUMN w INTEGER", "SELECT * FROM nowhere")})
    with pytest.raises(FailedError, match="nowhere"):
        open_(path, broken)
    assert version_of(path) == 1
    db = sqlite3.connect(path)
    assert [row[1] for row in db.execute("PRAGMA table_info(t)")] == ["k", "v"]
    db.close()


@pytest.mark.parametrize(
    "setup",
    [
        "CREATE TABLE other (x)",  # no version, foreign tables
        "CREATE TABLE t (k); PRAGMA user_version=7",  # a version we cannot read
    ],
)
def test_a_foreign_file_is_refused_and_left_as_it_is(tmp_path: Path, setup: str) -> None:
    path = tmp_path / "foreign.db"
    db = sqlite3.connect(path)
    db.executescript(setup)
    db.close()
    before = path.read_bytes()
    with pytest.raises(CorruptError, match="foreign schema"):
        open_(path)
    assert path.read_bytes() == before  # not even switched to WAL mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.db"]


def test_a_file_that_is_not_a_database_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database at all, " * 200)
    with pytest.raises(CorruptError, match="not a usable database"):
        open_(path)


def _damage_a_page(path: Path, page: int, page_size: int = 4096) -> None:
    """Overwrite the b-tree header of ``page`` (1-based) with garbage."""
    with path.open("r+b") as handle:
        handle.seek((page - 1) * page_size)
        handle.write(b"\xff" * 64)


def test_a_damaged_file_is_refused_at_open_by_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = open_(path)
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, "v" * 200, i) for i in range(2000)))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert path.stat().st_size > 20 * 4096
    _damage_a_page(path, 10)  # a leaf page of t: every query that misses it still works
    with pytest.raises(CorruptError, match=r"quick_check|malformed"):
        open_(path)


def test_new_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    db = open_(path)
    db.execute("INSERT INTO t VALUES (1, 'a', 2)")
    for name in ("x.db", "x.db-wal", "x.db-shm"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
    db.close()


@pytest.mark.parametrize(
    ("store", "error", "read", "names"),
    [
        (PeerRegistry, PeerRegistryError, lambda s: s.peers(), "peer registry"),
        (AgentStore, AgentStoreError, lambda s: s.agent_count(), "placement store"),
        (ModuleStore, RegistryStoreError, lambda s: s.trust_policy(), "module registry"),
    ],
)
def test_an_operator_stores_sqlite_errors_are_its_own_type_naming_the_file(
    tmp_path: Path, store: Any, error: type[Exception], read: Any, names: str
) -> None:
    path = tmp_path / "store.db"
    opened = store(path)
    opened.close()  # every statement now fails in SQLite
    with pytest.raises(error, match=f"^{names} {path}: .*closed database") as raised:
        read(opened)
    assert isinstance(raised.value.__cause__, sqlite3.Error)
