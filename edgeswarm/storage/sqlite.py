"""SQLite files that hold durable state: WAL mode, a versioned schema, corruption told apart.

The edge's spool and the gateway's observation-log index open their files
the same way, here:

1. create a missing file with mode 0600 (SQLite gives its ``-wal`` and
   ``-shm`` files the same mode), then connect in autocommit mode
   (``isolation_level=None``: callers say ``BEGIN``/``COMMIT`` themselves,
   through :func:`transaction`);
2. run ``PRAGMA quick_check`` on a file of at most ``quick_check_max_bytes``
   (every page and b-tree is read: ~250 MB/s here, so 256 MiB by default costs
   about a second; a larger file is left to the caller's own verification and
   the open says so in a log line), and refuse a damaged file;
3. read ``PRAGMA user_version`` and the tables, and refuse a file that holds
   neither nothing nor a version the :class:`Schema` reads (foreign or newer)
   before anything is written to it: a refused file is left exactly as it was;
4. set the page size (a new file only; SQLite ignores it afterwards), turn on
   WAL, and refuse a file where WAL cannot be turned on; set ``synchronous``
   and any other pragma the caller needs;
5. give an empty file the schema, or upgrade an older version, in one
   transaction (a failed upgrade leaves the file at its old version).

Errors are the caller's own types, made by two factories: ``corrupt`` (the
file is not a SQLite database, is damaged, or holds another schema: an
operator decision, nothing was changed) and ``failed`` (any other reason it
could not be opened: permissions, a lock, a full disk). Their messages name
the file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "QUICK_CHECK_MAX_BYTES",
    "Schema",
    "create_private",
    "enable_wal",
    "is_corruption",
    "open_database",
    "open_operator_store",
    "sqlite_errors",
    "statements",
    "transaction",
]

logger = logging.getLogger("edgeswarm.storage")

QUICK_CHECK_MAX_BYTES = 256 << 20
"""Largest file :func:`open_database` runs ``PRAGMA quick_check`` on (about a second)."""
QUICK_CHECK_PROBLEMS = 5
"""Problems ``quick_check`` reports at most (the first ones say enough)."""
SQLITE_CORRUPT = 11
SQLITE_NOTADB = 26

ErrorFactory = Callable[[str], Exception]
"""Makes the caller's error from a message."""
Upgrade = Callable[[sqlite3.Connection], None]
"""Brings a file of one older schema version to the current one (inside a transaction)."""


def statements(*sql: str) -> Upgrade:
    """An :data:`Upgrade` that runs ``sql`` in order."""

    def run(db: sqlite3.Connection) -> None:
        for statement in sql:
            db.execute(statement)

    return run


@dataclass(frozen=True, kw_only=True)
class Schema:
    """What a file of this kind holds, and how older versions of it are upgraded."""

    version: int
    """``PRAGMA user_version`` of the current schema (>= 1)."""
    create: Sequence[str]
    """Statements that give an empty file the current schema."""
    tables: frozenset[str]
    """Tables every readable version has."""
    upgrades: Mapping[int, Upgrade] = field(default_factory=dict)
    """Older version -> what brings a file of it to :attr:`version`."""


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file is not a database or is damaged."""
    code = getattr(exc, "sqlite_errorcode", 0) or 0
    return code & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB)


def create_private(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (data files are private)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


@contextmanager
def sqlite_errors(failed: ErrorFactory, what: str) -> Iterator[None]:
    """A SQLite error inside the block becomes ``failed("{what}: {error}")`` (an operator
    store's own type, its message naming the file)."""
    try:
        yield
    except sqlite3.Error as exc:
        raise failed(f"{what}: {exc}") from exc


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` if the block raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def open_database(
    path: Path,
    schema: Schema,
    *,
    page_size: int,
    synchronous: str,
    pragmas: Sequence[str] = (),
    busy_timeout_s: float = 5.0,
    check_same_thread: bool = True,
    quick_check_max_bytes: int | None = QUICK_CHECK_MAX_BYTES,
    corrupt: ErrorFactory,
    failed: ErrorFactory,
) -> sqlite3.Connection:
    """Open (or create) the database at ``path`` with ``schema`` (see the module docstring).

    ``synchronous`` is the ``PRAGMA synchronous`` value (``FULL``, ``NORMAL``,
    ``OFF``); ``pragmas`` are further statements run before the schema check.
    ``quick_check_max_bytes``: None never runs ``quick_check``. Raises
    ``corrupt(message)`` or ``failed(message)``.
    """
    try:
        create_private(path)
    except OSError as exc:
        raise failed(f"cannot create {path}: {exc.strerror}") from exc
    try:
        db = sqlite3.connect(
            path,
            timeout=busy_timeout_s,
            isolation_level=None,
            check_same_thread=check_same_thread,
        )
    except sqlite3.Error as exc:  # SQLite reads nothing yet: never a damaged file here
        raise failed(str(exc)) from exc
    try:
        _quick_check(db, path, quick_check_max_bytes, corrupt)
        upgrade = _upgrade_needed(db, schema, corrupt)
        db.execute(f"PRAGMA page_size={page_size}")  # new files only; before WAL mode
        enable_wal(db, failed)
        db.execute(f"PRAGMA synchronous={synchronous}")
        for pragma in pragmas:
            db.execute(pragma)
        if upgrade is not None:
            with transaction(db):
                upgrade(db)
                db.execute(f"PRAGMA user_version={schema.version}")
    except sqlite3.Error as exc:
        db.close()
        if is_corruption(exc):
            raise corrupt(f"not a usable database ({exc})") from exc
        raise failed(str(exc)) from exc
    except BaseException:
        db.close()
        raise
    return db


def enable_wal(db: sqlite3.Connection, failed: ErrorFactory) -> None:
    """Switch ``db`` to WAL mode; ``failed`` where SQLite keeps another mode (an in-memory
    or temporary database, a VFS without shared memory)."""
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise failed(f"cannot enable WAL (journal_mode={mode})")


def _quick_check(
    db: sqlite3.Connection, path: Path, max_bytes: int | None, corrupt: ErrorFactory
) -> None:
    """``PRAGMA quick_check`` when the file (and its WAL) is small enough; raise ``corrupt``."""
    if max_bytes is None:
        return
    size = sum(
        os.stat(f).st_size for f in (path, path.with_name(path.name + "-wal")) if os.path.exists(f)
    )
    if size > max_bytes:
        logger.info(
            "quick_check skipped at open: file larger than the limit",
            extra={"path": str(path), "bytes": size, "limit": max_bytes},
        )
        return
    try:
        rows = db.execute(f"PRAGMA quick_check({QUICK_CHECK_PROBLEMS})").fetchall()
    except UnicodeDecodeError as exc:  # it quotes damaged bytes: not "ok" in any case
        raise corrupt(f"damaged (quick_check names bytes that are not text: {exc})") from exc
    problems = [str(row[0]) for row in rows]
    if problems != ["ok"]:
        raise corrupt(f"damaged (quick_check: {'; '.join(problems)})")


def _upgrade_needed(
    db: sqlite3.Connection, schema: Schema, corrupt: ErrorFactory
) -> Upgrade | None:
    """What brings the file to ``schema`` (None: it is there); reads only."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
    if version == 0 and not tables:
        return statements(*schema.create)
    if version == schema.version and schema.tables <= tables:
        return None
    if version in schema.upgrades and schema.tables <= tables:
        return schema.upgrades[version]
    raise corrupt(f"foreign schema (user_version={version}, tables={sorted(tables)})")


def open_operator_store(
    path: Path, schema: Schema, *, label: str, error: ErrorFactory, start_over: str
) -> sqlite3.Connection:
    """Open (or create) a small store of operator decisions (``peers.db``, ``placement.db``,
    ``modules.db``): its directory made, ``synchronous=FULL`` (changes are rare and must
    survive a power loss), shared across threads; every failure is ``error(message)``
    naming ``label`` and the file, a damaged file with how to ``start_over``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(f"{label} {path}: {exc.strerror}") from exc
    return open_database(
        path,
        schema,
        page_size=4096,
        synchronous="FULL",
        check_same_thread=False,
        corrupt=lambda message: error(
            f"{label} {path} is not usable: {message}; restore it from a backup{start_over}"
        ),
        failed=lambda message: error(f"{label} {path} cannot be opened: {message}"),
    )
