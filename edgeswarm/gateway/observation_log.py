"""The gateway's durable observation log: what it acknowledged stays acknowledged.

Every :class:`~edgeswarm.wire.ObservationBatch` the gateway accepts is written
to one SQLite file (WAL mode) before its ACK goes out. Batches are keyed by
``(edge_id, seq)``; a batch that is already there is reported as a duplicate
and not applied twice, but it is durable, so the caller acknowledges it too.

Group commit, off the event loop. One writer thread owns the SQLite
connection. :meth:`ObservationLog.append` (event loop) and
:meth:`ObservationLog.submit` (any thread) only enqueue. The writer takes
everything queued (up to ``max_group_records`` / ``max_group_bytes``), writes
it in ONE transaction, commits it (fsync per :class:`FsyncPolicy`), and only
then reports: futures are resolved with one ``loop.call_soon_threadsafe`` per
group and event loop, never one per record. If the transaction fails, every
waiter of the group gets a :class:`LogWriteError`; nothing is ever reported as
written that was not committed. The queue is bounded by ``max_pending_bytes``
(:class:`LogOverloaded`); :attr:`ObservationLog.pending_bytes` lets the
gateway lower credit before that happens.

Checkpoints, off the commit path too. SQLite's automatic checkpoint runs
inside the COMMIT that crosses its threshold, so every few megabytes one
group would wait for the copy of the WAL into the database file and for two
fsyncs (measured: 10-40 ms, the gateway's p99 ack latency). The writer turns
it off; a checkpointer thread with its own connection runs PASSIVE
checkpoints every ``checkpoint_bytes`` of committed payload, concurrently
with later commits. A PASSIVE checkpoint under continuous writes never
catches up with the WAL's end, so SQLite could never restart the WAL from
its beginning: once the WAL passes ``wal_limit_bytes`` the writer itself
runs one more (short: the checkpointer copied nearly everything) checkpoint
between two groups, and the next transaction restarts the WAL. Commits, and
so acknowledgements, are exactly as durable as before; checkpoints only move
committed pages from the WAL into the main file.

Errors (one tree; all are errors *we* hit, none is the peer's fault)::

    ObservationLogError        base of every error of this module
    ├── LogOpenError           the file could not be opened as a log (``path``)
    │   └── LogCorruptError    the file is not a SQLite database or is damaged
    ├── LogWriteError          a group commit failed; every waiter of it gets this
    ├── LogOverloaded          ``max_pending_bytes`` would be exceeded; not queued
    └── LogClosed              append/submit after :meth:`ObservationLog.close`

Schema (``PRAGMA user_version = 2``; 16 KiB pages)::

    batches(edge_id TEXT, seq INTEGER, tick INTEGER, count INTEGER,
            payload BLOB, received_at REAL, PRIMARY KEY (edge_id, seq))

A rowid table with its primary key as a separate index: payloads of tens of
kilobytes are what WITHOUT ROWID tables are documented to be bad at, and with
16 KiB pages a 20 KB batch takes about 1.3 pages instead of 5 (measured
write cost per batch 78 us -> 37 us). Version 1 files (the same columns in a
WITHOUT ROWID table, 4 KiB pages) are opened and written as they are.

Per-edge aggregates (:class:`EdgeAggregate`) are not stored: they are rebuilt
from ``batches`` when the log opens and kept up to date in memory after each
commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgeswarm.resource import Resource

__all__ = [
    "AppendResult",
    "EdgeAggregate",
    "FsyncPolicy",
    "LogClosed",
    "LogCorruptError",
    "LogOpenError",
    "LogOverloaded",
    "LogRecord",
    "LogStats",
    "LogWriteError",
    "ObservationLog",
    "ObservationLogError",
]

SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = frozenset({1, 2})
"""Versions of the file this code opens; 1 differs only in the table's storage."""
PAGE_SIZE = 16384
"""Page size of new log files (existing files keep theirs)."""
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    edge_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    tick INTEGER NOT NULL,
    count INTEGER NOT NULL,
    payload BLOB NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (edge_id, seq)
)
"""


# --------------------------------------------------------------------------- errors


class ObservationLogError(Exception):
    """Base of every error of the observation log."""


class LogOpenError(ObservationLogError):
    """The log file could not be opened."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        """The database file."""


class LogCorruptError(LogOpenError):
    """The file is not a SQLite database, is damaged, or has a foreign schema.

    Nothing was changed on disk. Recovery is an operator decision: move the
    file (and its ``-wal``/``-shm`` companions) aside and start with an empty
    log, or restore it from a backup.
    """


class LogWriteError(ObservationLogError):
    """A group commit failed (disk full, I/O error, lock timeout, ...).

    Every record of the group was rolled back; none of them may be
    acknowledged. The log keeps running: later groups are tried again.
    """


class LogOverloaded(ObservationLogError):  # noqa: N818 (it names a state, like LogClosed)
    """Queuing the record would exceed ``max_pending_bytes``; it was not queued."""


class LogClosed(ObservationLogError):  # noqa: N818
    """The log is closed (or closing) and accepts no more records."""


# --------------------------------------------------------------------------- values


class FsyncPolicy(enum.StrEnum):
    """How hard a commit is pushed to stable storage (SQLite ``synchronous`` in WAL mode).

    The log always runs in WAL mode; a commit appends the group's pages to the
    ``-wal`` file, and checkpoints later copy them into the main file.
    """

    ALWAYS = "always"
    """``synchronous=FULL``: the WAL is fsynced at every group commit, before any
    waiter of the group is told. A reported append survives a process crash,
    ``kill -9``, an OS crash and power loss (as far as the disk honours fsync).
    Cost: one fsync per group, not per record."""

    NORMAL = "normal"
    """``synchronous=NORMAL``: a commit is a ``write()`` into the WAL (page cache)
    with no fsync; the WAL is fsynced only at checkpoints. A reported append
    survives a process crash or ``kill -9`` of the gateway. An OS crash or
    power loss may roll back the last commits (the database stays consistent,
    never corrupt) — records already acknowledged to edges can then be lost."""

    OFF = "off"
    """``synchronous=OFF``: SQLite never fsyncs. A reported append survives a
    process crash, but an OS crash or power loss may lose commits *and corrupt
    the database*. For tests and benchmarks only."""

    @property
    def pragma(self) -> str:
        """The ``PRAGMA synchronous`` value for this policy."""
        return {"always": "FULL", "normal": "NORMAL", "off": "OFF"}[self.value]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of one append, reported only after its group committed."""

    edge_id: str
    """Edge the batch came from."""
    seq: int
    """Per-edge sequence number of the batch."""
    applied: bool
    """True: this append stored the batch. False: ``(edge_id, seq)`` was already
    in the log (an earlier payload is kept; this one was ignored). Either way the
    batch is durable and the caller acknowledges it."""

    @property
    def duplicate(self) -> bool:
        """``(edge_id, seq)`` was already in the log; nothing was applied."""
        return not self.applied


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One stored observation batch."""

    edge_id: str
    """Edge the batch came from."""
    seq: int
    """Per-edge sequence number."""
    tick: int
    """Edge tick the observations were taken at."""
    count: int
    """Number of observations (agents) in the batch."""
    payload: bytes
    """The batch as received (opaque to the log)."""
    received_at: float
    """Wall-clock time (``time.time()``) the gateway queued the batch."""


@dataclass(frozen=True, slots=True)
class EdgeAggregate:
    """What the log holds for one edge."""

    edge_id: str
    """The edge."""
    batches: int
    """Distinct batches stored (duplicates not counted)."""
    observations: int
    """Sum of ``count`` over the stored batches."""
    bytes: int
    """Sum of payload lengths over the stored batches."""
    max_seq: int
    """Highest sequence number stored (0 when none)."""
    high_water: int
    """Contiguous high-water mark: the highest ``n`` such that every seq in
    ``1..n`` is stored (0 when seq 1 is missing). Equal to ``max_seq`` unless
    there are gaps."""


@dataclass(slots=True)
class LogStats:
    """Counters since the log was opened, for metrics export.

    :attr:`ObservationLog.stats` returns a copy; changing it changes nothing.
    """

    commits: int = 0
    """Group commits that succeeded."""
    records: int = 0
    """Records written by successful commits (applied + duplicates)."""
    applied: int = 0
    """Records that were new and stored."""
    duplicates: int = 0
    """Records ignored because ``(edge_id, seq)`` was already stored."""
    bytes: int = 0
    """Payload bytes of the applied records."""
    failed_commits: int = 0
    """Groups whose transaction failed (their waiters got :class:`LogWriteError`)."""
    failed_records: int = 0
    """Records in failed groups."""
    last_commit_latency_s: float = 0.0
    """Wall time of the last successful group: BEGIN to COMMIT returned (fsync included)."""
    last_group_records: int = 0
    """Records in the last successful group."""
    max_group_records: int = 0
    """Largest successful group so far."""
    checkpoints: int = 0
    """Checkpoints run (by the checkpointer thread or, to restart the WAL, the writer)."""
    wal_restarts: int = 0
    """Checkpoints the writer ran because the WAL passed ``wal_limit_bytes``."""
    failed_checkpoints: int = 0
    """Checkpoints that raised (the WAL keeps the data; the next one retries)."""

    @property
    def mean_group_records(self) -> float:
        """Mean records per successful commit."""
        return self.records / self.commits if self.commits else 0.0


# --------------------------------------------------------------------------- internals

Outcome = AppendResult | BaseException
"""What a :meth:`ObservationLog.submit` callback receives."""


@dataclass(slots=True)
class _Entry:
    record: LogRecord
    on_done: Callable[[Outcome], None] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[AppendResult] | None = None


@dataclass(slots=True)
class _EdgeState:
    batches: int = 0
    observations: int = 0
    bytes: int = 0
    max_seq: int = 0
    high_water: int = 0
    above: set[int] = field(default_factory=set)
    """Stored seqs greater than ``high_water + 1`` (the gaps' far side)."""

    def add(self, record: LogRecord) -> None:
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

    def snapshot(self, edge_id: str) -> EdgeAggregate:
        return EdgeAggregate(
            edge_id, self.batches, self.observations, self.bytes, self.max_seq, self.high_water
        )


_STOP = object()
CHECKPOINT_NICE = 19
"""Nice value of the checkpointer thread (Linux: per thread): the event loop and the
writer preempt its copying, so it uses the gateway core only when they leave it idle."""


def _lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority to ``CHECKPOINT_NICE``, where supported."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECKPOINT_NICE)


def _resolve_futures(batch: list[tuple[asyncio.Future[AppendResult], Outcome]]) -> None:
    """Runs on the event loop: one call per group settles all its futures."""
    for future, outcome in batch:
        if future.done():  # the caller cancelled it; the record is written anyway
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class ObservationLog(Resource):
    """Durable, deduplicating log of observation batches with group commit.

    ``ObservationLog(path)`` opens (or creates) the database, checks it, rebuilds
    the per-edge aggregates and starts the writer thread. Raises
    :class:`LogCorruptError` if the file is not a usable log, :class:`LogOpenError`
    for other open failures.

    Thread model: :meth:`append` must be called on the thread running the event
    loop that will await the future; :meth:`submit`, the properties and the
    read methods may be called from any thread.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        fsync: FsyncPolicy | str = FsyncPolicy.NORMAL,
        max_group_records: int = 1024,
        max_group_bytes: int = 16 << 20,
        max_pending_bytes: int | None = 256 << 20,
        busy_timeout_s: float = 5.0,
        checkpoint_bytes: int = 4 << 20,
        wal_limit_bytes: int = 64 << 20,
    ) -> None:
        """Open the log.

        :param path: database file; created (with its directory's WAL files) if absent.
        :param fsync: commit durability, see :class:`FsyncPolicy`.
        :param max_group_records: most records written by one transaction.
        :param max_group_bytes: most payload bytes written by one transaction (a
            single larger record still goes, alone).
        :param max_pending_bytes: queued-but-uncommitted payload bytes above which
            :meth:`append`/:meth:`submit` raise :class:`LogOverloaded`; None: no bound.
        :param busy_timeout_s: how long a commit waits for a lock held by another
            connection (a backup, an inspector) before the group fails.
        :param checkpoint_bytes: committed payload bytes between two background
            checkpoints.
        :param wal_limit_bytes: WAL size above which the writer finishes a
            checkpoint itself so that the WAL restarts (bounds the ``-wal`` file).
        """
        if max_group_records < 1 or max_group_bytes < 1:
            raise ValueError("max_group_records and max_group_bytes must be >= 1")
        if checkpoint_bytes < 1 or wal_limit_bytes < 1:
            raise ValueError("checkpoint_bytes and wal_limit_bytes must be >= 1")
        self.path = Path(path)
        """The database file."""
        self.fsync = FsyncPolicy(fsync)
        """The commit durability in force."""
        self.max_group_records = max_group_records
        self.max_group_bytes = max_group_bytes
        self.max_pending_bytes = max_pending_bytes
        self.checkpoint_bytes = checkpoint_bytes
        self.wal_limit_bytes = wal_limit_bytes

        self._lock = threading.Lock()
        self._edges: dict[str, _EdgeState] = {}
        self._stats = LogStats()
        self._pending_records = 0
        self._pending_bytes = 0
        self._closing = False
        self._queue: queue.SimpleQueue[_Entry | object] = queue.SimpleQueue()
        self._since_checkpoint = 0
        self._checkpoint_wake = threading.Event()
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_stop = False
        self._wal_full = False

        self._db = self._open(busy_timeout_s)
        try:
            self._load_aggregates()
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            self._checkpoint_db = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise self._open_error(exc) from exc
        self._checkpoint_db.execute(f"PRAGMA synchronous={self.fsync.pragma}")
        self._checkpointer = threading.Thread(
            target=self._run_checkpointer,
            name=f"observation-log-ckpt:{self.path.name}",
            daemon=True,
        )
        self._checkpointer.start()
        self._thread = threading.Thread(
            target=self._run_writer, name=f"observation-log:{self.path.name}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ opening

    def _open_error(self, exc: sqlite3.Error) -> LogOpenError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return LogCorruptError(f"not a usable observation log ({exc})", path=self.path)
        return LogOpenError(str(exc), path=self.path)

    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self.path,
                timeout=busy_timeout_s,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # handed to the writer thread after setup
            )
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        try:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # new files only; before WAL mode
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LogOpenError(f"cannot enable WAL (journal_mode={mode})", path=self.path)
            db.execute(f"PRAGMA synchronous={self.fsync.pragma}")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
            db.execute(f"PRAGMA journal_size_limit={self.wal_limit_bytes}")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_schema WHERE type='table'")}
            if version == 0 and not tables:
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version not in READABLE_SCHEMA_VERSIONS or "batches" not in tables:
                raise LogCorruptError(
                    f"foreign schema (user_version={version}, tables={sorted(tables)})",
                    path=self.path,
                )
        except sqlite3.Error as exc:
            db.close()
            raise self._open_error(exc) from exc
        except BaseException:
            db.close()
            raise
        return db

    def _load_aggregates(self) -> None:
        rows = self._db.execute(
            "SELECT edge_id, count(*), total(count), total(length(payload)), max(seq)"
            " FROM batches GROUP BY edge_id"
        ).fetchall()
        for edge_id, batches, observations, nbytes, max_seq in rows:
            state = _EdgeState(int(batches), int(observations), int(nbytes), int(max_seq))
            # First gap: the first row (in seq order, from 1) whose seq != its rank.
            gap = self._db.execute(
                "SELECT min(rn) - 1 FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS rn"
                " FROM batches WHERE edge_id = ? AND seq >= 1) WHERE seq != rn",
                (edge_id,),
            ).fetchone()[0]
            if gap is None:
                gap = self._db.execute(
                    "SELECT count(*) FROM batches WHERE edge_id = ? AND seq >= 1", (edge_id,)
                ).fetchone()[0]
            state.high_water = int(gap)
            state.above = {
                int(r[0])
                for r in self._db.execute(
                    "SELECT seq FROM batches WHERE edge_id = ? AND seq > ?",
                    (edge_id, state.high_water + 1),
                )
            }
            self._edges[edge_id] = state

    # ------------------------------------------------------------------ writing

    def append(
        self, edge_id: str, seq: int, tick: int, count: int, payload: bytes
    ) -> asyncio.Future[AppendResult]:
        """Queue one batch; the future resolves once its group is committed.

        Call on the event loop thread. Send the ACK only after the future
        resolves — with an :class:`AppendResult` whether applied or duplicate.
        The future fails with :class:`LogWriteError` if the group's commit
        failed (do not ACK; the edge will resend). Raises :class:`LogOverloaded`
        or :class:`LogClosed` at once, queuing nothing. Cancelling the future
        does not un-queue the record.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        record = LogRecord(edge_id, seq, tick, count, bytes(payload), time.time())
        self._enqueue(_Entry(record, loop=loop, future=future))
        return future

    def submit(self, record: LogRecord, on_done: Callable[[Outcome], None]) -> None:
        """Queue ``record``; call ``on_done`` once its group committed or failed.

        ``on_done`` runs on the writer thread with an :class:`AppendResult` or
        the :class:`LogWriteError`; it must be quick and must not block (hand
        off with ``loop.call_soon_threadsafe`` if needed). Raises
        :class:`LogOverloaded` or :class:`LogClosed` at once, queuing nothing.
        """
        self._enqueue(_Entry(record, on_done=on_done))

    def _enqueue(self, entry: _Entry) -> None:
        size = len(entry.record.payload)
        with self._lock:
            if self._closing:
                raise LogClosed(f"{self.path}: log is closed")
            if (
                self.max_pending_bytes is not None
                and self._pending_records
                and self._pending_bytes + size > self.max_pending_bytes
            ):
                raise LogOverloaded(
                    f"{self.path}: {self._pending_bytes} bytes pending, "
                    f"limit {self.max_pending_bytes}"
                )
            self._pending_records += 1
            self._pending_bytes += size
            self._queue.put(entry)

    def _run_writer(self) -> None:
        """Writer thread: take a group, write it in one transaction, report, repeat."""
        carry: _Entry | None = None
        stop = False
        while not stop:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if not isinstance(first, _Entry):  # _STOP: close() queued it after the last entry
                break
            if self._wal_full:
                self._restart_wal()
            group = [first]
            nbytes = len(first.record.payload)
            while len(group) < self.max_group_records:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, _Entry):
                    stop = True  # write what we have, then exit
                    break
                if nbytes + len(item.record.payload) > self.max_group_bytes:
                    carry = item  # opens the next group
                    break
                group.append(item)
                nbytes += len(item.record.payload)
            self._write_group(group)
        self._checkpoint_stop = True
        self._checkpoint_wake.set()
        self._checkpointer.join()
        self._db.close()  # the last connection: SQLite checkpoints and removes the WAL

    def _run_checkpointer(self) -> None:
        """Checkpointer thread: a PASSIVE checkpoint each time the writer asks for one."""
        db = self._checkpoint_db
        _lower_thread_priority()
        try:
            while True:
                self._checkpoint_wake.wait()
                self._checkpoint_wake.clear()
                if self._checkpoint_stop:
                    return
                if self._wal_full:  # the writer's turn: it restarts the WAL next
                    continue
                with self._checkpoint_lock:
                    wal_frames = self._checkpoint(db)
                if wal_frames is not None and wal_frames * self._page_size >= self.wal_limit_bytes:
                    self._wal_full = True
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> int | None:
        """One PASSIVE checkpoint (never waits for the writer); frames in the WAL, or None."""
        try:
            _busy, wal_frames, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            with self._lock:
                self._stats.failed_checkpoints += 1
            logging.getLogger("edgeswarm.gateway").warning(
                "observation log checkpoint failed", extra={"error": str(exc)}
            )
            return None
        with self._lock:
            self._stats.checkpoints += 1
        return int(wal_frames)

    def _restart_wal(self) -> None:
        """Writer, between groups: copy the rest of the WAL so the next commit restarts it.

        Waits for a background checkpoint in progress (which copied most of it);
        the checkpointer starts no new one until this is done.
        """
        with self._checkpoint_lock:
            self._wal_full = False
            if self._checkpoint(self._db) is not None:
                with self._lock:
                    self._stats.wal_restarts += 1

    def _write_group(self, group: list[_Entry]) -> None:
        outcomes: list[Outcome]
        started = time.perf_counter()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                applied: list[bool] = []
                for entry in group:
                    r = entry.record
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                        (r.edge_id, r.seq, r.tick, r.count, r.payload, r.received_at),
                    )
                    applied.append(cur.rowcount == 1)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except Exception as exc:
            error = LogWriteError(f"{self.path}: commit of {len(group)} records failed: {exc}")
            error.__cause__ = exc
            outcomes = [error] * len(group)
            with self._lock:
                self._stats.failed_commits += 1
                self._stats.failed_records += len(group)
                self._pending_records -= len(group)
                self._pending_bytes -= sum(len(e.record.payload) for e in group)
        else:
            latency = time.perf_counter() - started
            outcomes = [
                AppendResult(e.record.edge_id, e.record.seq, ok)
                for e, ok in zip(group, applied, strict=True)
            ]
            new_bytes = 0
            with self._lock:
                for e, ok in zip(group, applied, strict=True):
                    if ok:
                        self._edges.setdefault(e.record.edge_id, _EdgeState()).add(e.record)
                        new_bytes += len(e.record.payload)
                n_applied = sum(applied)
                s = self._stats
                s.commits += 1
                s.records += len(group)
                s.applied += n_applied
                s.duplicates += len(group) - n_applied
                s.bytes += new_bytes
                s.last_commit_latency_s = latency
                s.last_group_records = len(group)
                s.max_group_records = max(s.max_group_records, len(group))
                self._pending_records -= len(group)
                self._pending_bytes -= sum(len(e.record.payload) for e in group)
            self._since_checkpoint += sum(len(e.record.payload) for e in group)
            if self._since_checkpoint >= self.checkpoint_bytes:
                self._since_checkpoint = 0
                self._checkpoint_wake.set()
        self._report(group, outcomes)

    @staticmethod
    def _report(group: list[_Entry], outcomes: list[Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[AppendResult], Outcome]]]
        by_loop = {}
        for entry, outcome in zip(group, outcomes, strict=True):
            if entry.on_done is not None:
                try:
                    entry.on_done(outcome)
                except Exception:  # a caller's bug must not kill the writer
                    logging.getLogger("edgeswarm.gateway").exception(
                        "observation log callback failed"
                    )
            if entry.loop is not None and entry.future is not None:
                by_loop.setdefault(entry.loop, []).append((entry.future, outcome))
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve_futures, batch)

    # ------------------------------------------------------------------ state

    @property
    def pending_records(self) -> int:
        """Records queued or being written, not yet reported."""
        with self._lock:
            return self._pending_records

    @property
    def pending_bytes(self) -> int:
        """Payload bytes queued or being written, not yet reported."""
        with self._lock:
            return self._pending_bytes

    @property
    def stats(self) -> LogStats:
        """A snapshot of the counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    def edges(self) -> dict[str, EdgeAggregate]:
        """Per-edge aggregates of everything committed (rebuilt at open)."""
        with self._lock:
            return {edge_id: s.snapshot(edge_id) for edge_id, s in self._edges.items()}

    def high_water(self, edge_id: str) -> int:
        """Contiguous high-water mark of ``edge_id``: highest ``n`` with ``1..n`` all
        committed; 0 for an unknown edge. See :attr:`EdgeAggregate.high_water`."""
        with self._lock:
            state = self._edges.get(edge_id)
            return state.high_water if state is not None else 0

    def count(self) -> int:
        """Distinct batches committed, over all edges."""
        with self._lock:
            return sum(s.batches for s in self._edges.values())

    def read(self, edge_id: str, from_seq: int = 0) -> Iterator[LogRecord]:
        """Committed batches of ``edge_id`` with ``seq >= from_seq``, in seq order.

        Reads through its own connection (a WAL snapshot taken at the first
        ``next()``), so it never blocks the writer and may run on any thread.
        """
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            cur = db.execute(
                "SELECT edge_id, seq, tick, count, payload, received_at FROM batches"
                " WHERE edge_id = ? AND seq >= ? ORDER BY seq",
                (edge_id, from_seq),
            )
            for row in cur:
                yield LogRecord(row[0], row[1], row[2], row[3], bytes(row[4]), row[5])
        finally:
            db.close()

    def close(self) -> None:
        """Write everything already queued, report it, stop the writer. Idempotent."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join()
