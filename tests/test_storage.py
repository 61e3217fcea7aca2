"""The SQLite opening every durable file shares: schema versions, upgrades, foreign files."""

from __future__ import annotations

import logging
import os
import random
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.gateway.agent_store import AgentStore, AgentStoreError
from edgeswarm.gateway.peers import PeerRegistry, PeerRegistryError
from edgeswarm.registry.errors import RegistryStoreError
from edgeswarm.registry.store import ModuleStore
from edgeswarm.storage import Schema, open_database, statements
from edgeswarm.storage.sqlite import (
    QUICK_CHECK_MAX_BYTES,
    Upgrade,
    create_private,
    enable_wal,
    is_corruption,
    open_operator_store,
    sqlite_errors,
    transaction,
)


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


def open_(
    path: Path,
    kind: Schema | None = None,
    *,
    quick_check_max_bytes: int | None = QUICK_CHECK_MAX_BYTES,
) -> sqlite3.Connection:
    return open_database(
        path,
        kind or schema(),
        page_size=4096,
        synchronous="NORMAL",
        quick_check_max_bytes=quick_check_max_bytes,
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


# --- how a file is opened: the settings each caller asks for, the checks, the refusals ---


def fds_on(path: Path) -> list[str]:
    """This process's open file descriptors on ``path`` (or its -wal/-shm files)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


@pytest.mark.parametrize(("synchronous", "level"), [("OFF", 0), ("NORMAL", 1), ("FULL", 2)])
def test_the_callers_settings_are_what_the_connection_runs_with(
    tmp_path: Path, synchronous: str, level: int
) -> None:
    path = tmp_path / "x.db"
    db = open_database(
        path,
        schema(),
        page_size=8192,
        synchronous=synchronous,
        pragmas=("PRAGMA cache_size=-1234",),
        busy_timeout_s=0.25,
        corrupt=CorruptError,
        failed=FailedError,
    )
    assert db.execute("PRAGMA synchronous").fetchone()[0] == level
    assert db.execute("PRAGMA page_size").fetchone()[0] == 8192
    assert db.execute("PRAGMA cache_size").fetchone()[0] == -1234
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 250
    assert db.isolation_level is None  # autocommit: callers say BEGIN/COMMIT
    db.execute("INSERT INTO t VALUES (1, 'a', 2)")
    assert not db.in_transaction
    db.close()
    assert version_of(path) == 2


def test_the_default_busy_timeout_is_five_seconds_and_one_thread_owns_the_connection(
    tmp_path: Path,
) -> None:
    db = open_(tmp_path / "x.db")
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    with ThreadPoolExecutor(1) as pool, pytest.raises(sqlite3.ProgrammingError, match="thread"):
        pool.submit(db.execute, "SELECT 1").result()
    db.close()


@pytest.mark.parametrize("code", [11, 26, 11 | (1 << 8), 11 | (2 << 8), 26 | (1 << 8)])
def test_corruption_is_told_by_the_primary_code_of_an_extended_one(code: int) -> None:
    exc = sqlite3.DatabaseError("x")
    exc.sqlite_errorcode = code
    assert is_corruption(exc)


@pytest.mark.parametrize("code", [None, 0, 1, 5, 14, 13, 10 | (1 << 8), 12, 25, 27])
def test_other_errors_and_errors_without_a_code_are_no_corruption(code: int | None) -> None:
    exc = sqlite3.OperationalError("x")
    if code is not None:
        exc.sqlite_errorcode = code
    assert not is_corruption(exc)


def test_an_existing_file_keeps_its_bytes_and_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "kept"
    path.write_bytes(b"mine")
    path.chmod(0o644)
    create_private(path)
    assert path.read_bytes() == b"mine"
    assert path.stat().st_mode & 0o777 == 0o644
    create_private(tmp_path / "new")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new").read_bytes() == b""


def test_a_file_that_cannot_be_created_is_failed_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "x.db"
    with pytest.raises(FailedError) as raised:
        open_(path)
    assert str(raised.value) == f"cannot create {path}: No such file or directory"
    assert isinstance(raised.value.__cause__, OSError)


def test_a_path_sqlite_cannot_open_is_failed_not_corrupt(tmp_path: Path) -> None:
    with pytest.raises(FailedError, match=r"^unable to open database file$"):
        open_(tmp_path)  # a directory


def test_quick_check_names_the_first_five_problems(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    _damaged(path)
    with pytest.raises(CorruptError) as raised:
        open_(path)
    message = str(raised.value)
    assert message.startswith("damaged (quick_check: *** in database main ***\nOn tree page")
    assert message.endswith(")")
    assert message.count("out of range") == 5
    assert fds_on(path) == []  # the refused connection is closed


def _damaged(path: Path) -> int:
    """A file whose leaf pages' cell pointers point out of range (quick_check names them,
    plain reads do not notice); its size."""
    db = open_(path)
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, "v" * 200, i) for i in range(5000)))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with path.open("r+b") as handle:
        for page in range(10, 200, 7):
            handle.seek((page - 1) * 4096 + 8)
            handle.write(b"\x00\x10" * 8)
    return path.stat().st_size


def test_quick_check_runs_on_a_file_exactly_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    size = _damaged(path)
    with pytest.raises(CorruptError, match="quick_check"):
        open_(path, quick_check_max_bytes=size)


@pytest.mark.parametrize("limit", ["one byte less", None])
def test_a_file_over_the_limit_is_opened_unchecked_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, limit: str | None
) -> None:
    path = tmp_path / "x.db"
    size = _damaged(path)
    max_bytes = None if limit is None else size - 1
    with caplog.at_level(logging.INFO, logger="edgeswarm.storage"):
        db = open_(path, quick_check_max_bytes=max_bytes)
    db.close()
    skipped = [r for r in caplog.records if r.getMessage().startswith("quick_check skipped")]
    if limit is None:
        assert skipped == []  # never checked, nothing to say
        return
    [record] = skipped
    assert record.getMessage() == "quick_check skipped at open: file larger than the limit"
    assert record.levelno == logging.INFO
    assert (record.path, record.bytes, record.limit) == (str(path), size, size - 1)  # type: ignore[attr-defined]


def test_the_wal_file_counts_toward_the_quick_check_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "x.db"
    keeper = open_(path)  # holds the WAL open: nothing is checkpointed into the file
    keeper.execute("INSERT INTO t VALUES (1, 'a', 2)")
    size = path.stat().st_size + Path(f"{path}-wal").stat().st_size
    assert size > path.stat().st_size
    for limit, skipped in ((size - 1, True), (size, False)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="edgeswarm.storage"):
            open_(path, quick_check_max_bytes=limit).close()
        said = [r for r in caplog.records if r.getMessage().startswith("quick_check skipped")]
        assert [r.bytes for r in said] == ([size] if skipped else [])  # type: ignore[attr-defined]
    keeper.close()


def test_a_transaction_commits_or_rolls_back_and_leaves_none_open(tmp_path: Path) -> None:
    db = open_(tmp_path / "x.db")
    with transaction(db):
        db.execute("INSERT INTO t VALUES (1, 'kept', 0)")
        assert db.in_transaction

    def interrupted() -> None:
        with transaction(db):
            db.execute("INSERT INTO t VALUES (2, 'gone', 0)")
            raise KeyboardInterrupt  # a BaseException rolls back too

    def ended_by_the_block() -> None:
        with transaction(db):
            db.execute("COMMIT")  # nothing left to roll back
            raise ValueError("mine")

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert not db.in_transaction
    with pytest.raises(ValueError, match="mine"):
        ended_by_the_block()
    assert [row[0] for row in db.execute("SELECT v FROM t")] == ["kept"]
    db.close()


def test_sqlite_errors_become_the_callers_type_naming_what() -> None:
    with pytest.raises(FailedError) as raised, sqlite_errors(FailedError, "store /x"):
        raise sqlite3.OperationalError("disk I/O error")
    assert str(raised.value) == "store /x: disk I/O error"
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    with pytest.raises(ValueError, match="not sqlite"), sqlite_errors(FailedError, "store"):
        raise ValueError("not sqlite")


@pytest.mark.parametrize(
    ("setup", "refusal"),
    [
        ("CREATE TABLE u (k); PRAGMA user_version=2", "user_version=2, tables=['u']"),
        ("CREATE TABLE u (k); PRAGMA user_version=1", "user_version=1, tables=['u']"),
        ("CREATE TABLE z (k); CREATE TABLE a (k)", "user_version=0, tables=['a', 'z']"),
        ("PRAGMA user_version=2", "user_version=2, tables=[]"),
    ],
)
def test_a_file_without_the_schemas_tables_is_refused_whatever_its_version(
    tmp_path: Path, setup: str, refusal: str
) -> None:
    path = tmp_path / "x.db"
    db = sqlite3.connect(path)
    db.executescript(setup)
    db.close()
    with pytest.raises(CorruptError) as raised:
        open_(path)
    assert str(raised.value) == f"foreign schema ({refusal})"
    assert fds_on(path) == []


OPERATOR_SCHEMA = Schema(version=1, create=("CREATE TABLE p (k)",), tables=frozenset({"p"}))


def open_operator(path: Path) -> sqlite3.Connection:
    return open_operator_store(
        path, OPERATOR_SCHEMA, label="test store", error=FailedError, start_over=" or start over"
    )


def test_an_operator_store_is_made_with_its_directory_durable_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.db"
    db = open_operator(path)
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA page_size").fetchone()[0] == 4096
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with ThreadPoolExecutor(1) as pool:  # the admin API's threads share it
        assert pool.submit(lambda: db.execute("SELECT count(*) FROM p").fetchone()).result() == (0,)
    db.close()


def test_an_operator_stores_refusals_name_it_and_say_what_to_do(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all, " * 200)
    with pytest.raises(FailedError) as raised:
        open_operator(junk)
    assert str(raised.value) == (
        f"test store {junk} is not usable: not a usable database (file is not a database);"
        " restore it from a backup or start over"
    )
    with pytest.raises(FailedError) as raised:
        open_operator(tmp_path)  # a directory
    assert (
        str(raised.value) == f"test store {tmp_path} cannot be opened: unable to open database file"
    )
    (tmp_path / "file").write_bytes(b"")
    inside_a_file = tmp_path / "file" / "store.db"
    with pytest.raises(FailedError) as raised:
        open_operator(inside_a_file)
    assert str(raised.value) == f"test store {inside_a_file}: File exists"
    assert isinstance(raised.value.__cause__, OSError)


def test_a_database_that_keeps_another_journal_mode_is_refused() -> None:
    db = sqlite3.connect(":memory:")  # SQLite keeps "memory" for these
    with pytest.raises(FailedError) as raised:
        enable_wal(db, FailedError)
    assert str(raised.value) == "cannot enable WAL (journal_mode=memory)"
    db.close()


def test_quick_checks_rows_are_joined_in_the_refusal(tmp_path: Path) -> None:
    """Some damage makes quick_check report in several rows: the refusal names them all,
    in order. Seeded damage, bounded: the first seed that gives several rows."""
    base = tmp_path / "base.db"
    db = open_(base)
    db.executemany("INSERT INTO t VALUES (?, ?, ?)", ((i, "v" * 200, i) for i in range(3000)))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    pages = base.stat().st_size // 4096
    for seed in range(200):
        path = tmp_path / f"damaged-{seed}.db"
        shutil.copyfile(base, path)
        rnd = random.Random(seed)
        with path.open("r+b") as handle:
            for _ in range(rnd.randint(1, 4)):
                handle.seek((rnd.randint(2, pages) - 1) * 4096 + rnd.randint(0, 4064))
                handle.write(rnd.randbytes(rnd.randint(1, 32)))
        reader = sqlite3.connect(path)
        try:
            rows = [str(row[0]) for row in reader.execute("PRAGMA quick_check(5)")]
        except (sqlite3.Error, UnicodeDecodeError):
            continue
        finally:
            reader.close()
        if len(rows) > 1:
            break
    else:
        pytest.fail("no seeded damage made quick_check report in several rows")
    with pytest.raises(CorruptError) as raised:
        open_(path)
    assert str(raised.value) == f"damaged (quick_check: {'; '.join(rows)})"
