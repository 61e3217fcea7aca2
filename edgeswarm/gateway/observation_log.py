"""The gateway's durable observation log: what it acknowledged stays acknowledged.

Every :class:`~edgeswarm.wire.ObservationBatch` the gateway accepts is written
to the log before its ACK goes out. Batches are keyed by ``(edge_id, seq)``; a
batch that is already there is reported as a duplicate and not applied twice,
but it is durable, so the caller acknowledges it too.

Key-value separation (the WiscKey / RocksDB BlobDB design). Payloads go to
append-only segment files, written once (:mod:`~edgeswarm.gateway.segment_files`
describes them: naming, rollover, rewind, the one-writer lock); SQLite (WAL
mode) holds one small index row per batch and is the commit point.

Stored as a BLOB in SQLite, a 20 KB payload cost ~30 us of writer CPU per
batch, ~20 us more when a checkpoint copied it from the WAL into the database
file, and was written to disk twice; appended to a segment it costs ~15 us
(with a crc32, ~10 us with the XXH3-64 checksum now used), and checkpoints copy
only index pages. Through the whole log (20.6 KB batches,
windows of 256, ``fsync=normal``): writer thread 36-50 -> 19-31 us per batch,
checkpointer 6-10 -> 0 us. Files, for ``observations.db``::

    observations.db            SQLite: the index and the commit point
    observations.db-wal, -shm  SQLite's WAL and its index
    observations.db-segments/  000000000001.seg, ...: the payloads
                               (:mod:`edgeswarm.gateway.segment_files`)

Group commit, off the event loop. One writer thread owns the SQLite
connection and the segment being appended to. :meth:`ObservationLog.append`
(event loop) and :meth:`ObservationLog.submit` (any thread) only enqueue. The
writer takes everything queued (up to ``max_group_records`` /
``max_group_bytes``) and, in this order:

1. leaves out records already stored (the per-edge state in memory, and
   repeats within the group): their payloads are never written again;
2. appends the other payloads to the current segment with one ``writev``;
3. ``fsync=always`` only: ``fdatasync`` of the segment (and of the directory
   when the segment is new), so that no committed row can point at bytes
   less durable than itself;
4. inserts the index rows (segment, offset, length, XXH3-64 of the payload) in one transaction
   and commits it (the WAL fsync per :class:`FsyncPolicy`);
5. only then reports: the callbacks of :meth:`ObservationLog.append_then` (and
   the futures of :meth:`ObservationLog.append`) run from one
   ``loop.call_soon_threadsafe`` per group and event loop, never one per record,
   followed in the same call by each distinct ``after_group`` hook of the group.

If a step fails, the segment is cut back to where the group started and every
waiter of the group gets a :class:`LogWriteError`; nothing is ever reported as
written that was not committed. Under ``fsync=normal`` steps 2 and 4 are
writes into the page cache: an acknowledged batch survives ``kill -9``, and an
OS crash may lose recent batches (see :class:`FsyncPolicy`). The queue is
bounded by ``max_pending_bytes`` (:class:`LogOverloaded`);
:attr:`ObservationLog.pending_bytes` lets the gateway lower credit before that
happens.

Recovery at open, under the segment directory's lock (one
:class:`ObservationLog` per file). Segment bytes no committed row references
are cut off (see :mod:`~edgeswarm.gateway.segment_files`). Rows whose bytes
are missing (a segment shorter than its rows say, or gone: only after an OS
crash under ``fsync=normal``/``off``, or tampering) are deleted, logged as a
warning and counted in :attr:`LogStats.lost_on_open`.
:meth:`~ObservationLog.read` checks each payload's XXH3-64 checksum
(:class:`LogRecordCorrupt`).

Checkpoints, off the commit path too. SQLite's automatic checkpoint runs
inside the COMMIT that crosses its threshold, so one group would wait for the
copy of the WAL into the database file and for two fsyncs. The writer turns
it off; a checkpointer thread with its own connection runs PASSIVE
checkpoints every ``checkpoint_commits`` group commits, concurrently with
later commits. A PASSIVE checkpoint under continuous writes never catches up
with the WAL's end, so SQLite could never restart the WAL from its beginning:
once the WAL passes ``wal_limit_bytes`` the writer itself runs one more
(short) checkpoint between two groups, and the next transaction restarts the
WAL. The checkpointer notices that after its checkpoints; the writer also
checks the ``-wal`` file's size after each commit, so the bound holds when the
checkpointer gets no CPU (it runs at nice 19: under a competing load it may
not run for seconds). Checkpoints only move committed pages from the WAL into
the main file.

Errors: one tree, rooted at :class:`ObservationLogError`, drawn in
:mod:`edgeswarm.gateway.log_records`.

Schema (``PRAGMA user_version = 3``; 4 KiB pages: rows are ~60 bytes)::

    batches(edge_id TEXT, seq INTEGER, tick INTEGER, count INTEGER,
            payload BLOB, received_at REAL,
            segment INTEGER, offset INTEGER, length INTEGER, xxh3 INTEGER,
            PRIMARY KEY (edge_id, seq))

New rows have ``payload = x''`` and point into a segment; rows with ``segment
IS NULL`` hold their payload inline: rows of version 1 and 2 files (inline
payloads; version 1 in a WITHOUT ROWID table), which are upgraded in place
when opened (the four columns are added, no row is rewritten), and empty
payloads.

Per-edge aggregates (:class:`EdgeAggregate`) are not stored: they are rebuilt
from ``batches`` when the log opens and kept up to date in memory after each
commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
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

import xxhash

from edgeswarm.resource import Resource

from .log_records import (
    AppendResult,
    EdgeAggregate,
    FsyncPolicy,
    LogClosed,
    LogCorruptError,
    LogOpenError,
    LogOverloaded,
    LogRecord,
    LogRecordCorrupt,
    LogStats,
    LogWriteError,
    ObservationLogError,
)
from .segment_files import SegmentFiles

__all__ = [
    "AppendResult",
    "EdgeAggregate",
    "FsyncPolicy",
    "LogClosed",
    "LogCorruptError",
    "LogOpenError",
    "LogOverloaded",
    "LogRecord",
    "LogRecordCorrupt",
    "LogStats",
    "LogWriteError",
    "ObservationLog",
    "ObservationLogError",
]

SCHEMA_VERSION = 3
READABLE_SCHEMA_VERSIONS = frozenset({1, 2, 3})
"""Versions of the file this code opens; 1 and 2 are upgraded to 3 when opened."""
PAGE_SIZE = 4096
"""Page size of new log files (existing files keep theirs)."""
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_SCHEMA = """
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
"""
_SEGMENT_COLUMNS = ("segment", "offset", "length", "xxh3")
_COLUMNS = ("edge_id", "seq", "tick", "count", "payload", "received_at", *_SEGMENT_COLUMNS)
_INSERT = (
    f"INSERT OR IGNORE INTO batches ({', '.join(_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_Row = tuple[str, int, int, int, bytes, float, int | None, int | None, int | None, int | None]


# --------------------------------------------------------------------------- internals

Outcome = AppendResult | BaseException
"""What a :meth:`ObservationLog.submit` callback receives."""


def checksum(payload: bytes) -> int:
    """XXH3-64 of ``payload`` as SQLite stores integers (signed 64-bit)."""
    value = xxhash.xxh3_64_intdigest(payload)
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(slots=True)
class _Entry:
    record: LogRecord
    on_done: Callable[[Outcome], None] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    on_loop: Callable[[Outcome], None] | None = None
    after_group: Callable[[], None] | None = None


@dataclass(slots=True)
class _EdgeState:
    batches: int = 0
    observations: int = 0
    bytes: int = 0
    max_seq: int = 0
    high_water: int = 0
    above: set[int] = field(default_factory=set)
    """Stored seqs greater than ``high_water + 1`` (the gaps' far side)."""
    below: set[int] = field(default_factory=set)
    """Stored seqs below 1 (edges count from 1; kept so :meth:`holds` is exact)."""

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
        elif record.seq < 1:
            self.below.add(record.seq)

    def holds(self, seq: int) -> bool:
        """Whether ``seq`` is committed."""
        if seq > self.high_water:
            return seq in self.above
        return seq >= 1 or seq in self.below

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


def _run_on_loop(
    batch: list[tuple[Callable[[Outcome], None], Outcome]],
    after_group: dict[Callable[[], None], None],
) -> None:
    """Runs on the event loop: one call per group runs all its ``on_loop`` callbacks,
    then each distinct ``after_group`` hook once."""
    for on_done, outcome in batch:
        try:
            on_done(outcome)
        except Exception:  # one caller's bug must not keep the others' acks back
            logging.getLogger("edgeswarm.gateway").exception("observation log callback failed")
    for hook in after_group:
        try:
            hook()
        except Exception:
            logging.getLogger("edgeswarm.gateway").exception("observation log hook failed")


def _settle(future: asyncio.Future[AppendResult], outcome: Outcome) -> None:
    if future.done():  # the caller cancelled it; the record is written anyway
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class ObservationLog(Resource):
    """Durable, deduplicating log of observation batches with group commit.

    ``ObservationLog(path)`` opens (or creates) the database and its segment
    directory, checks them, recovers from a crash (see the module docstring),
    rebuilds the per-edge aggregates and starts the writer thread. Raises
    :class:`LogCorruptError` if the file is not a usable log, :class:`LogOpenError`
    for other open failures (among them: another :class:`ObservationLog` has
    the file open).

    Thread model: :meth:`append` and :meth:`append_then` must be called on the
    thread running the event loop that will await the future or run the
    callback; :meth:`submit`, the properties and the read methods may be called
    from any thread.
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
        segment_bytes: int = 256 << 20,
        checkpoint_commits: int = 512,
        wal_limit_bytes: int = 64 << 20,
    ) -> None:
        """Open the log.

        :param path: database file; created (with its directory's WAL files and
            the segment directory ``<path>-segments``) if absent.
        :param fsync: commit durability, see :class:`FsyncPolicy`.
        :param max_group_records: most records written by one transaction.
        :param max_group_bytes: most payload bytes written by one transaction (a
            single larger record still goes, alone).
        :param max_pending_bytes: queued-but-uncommitted payload bytes above which
            :meth:`append`/:meth:`submit` raise :class:`LogOverloaded`; None: no bound.
        :param busy_timeout_s: how long a commit waits for a lock held by another
            connection (a backup, an inspector) before the group fails.
        :param segment_bytes: segment size past which the next group starts a new
            segment file.
        :param checkpoint_commits: group commits between two background checkpoints.
        :param wal_limit_bytes: WAL size above which the writer finishes a
            checkpoint itself so that the WAL restarts (bounds the ``-wal`` file).
        """
        if max_group_records < 1 or max_group_bytes < 1:
            raise ValueError("max_group_records and max_group_bytes must be >= 1")
        if segment_bytes < 1 or checkpoint_commits < 1 or wal_limit_bytes < 1:
            raise ValueError("segment_bytes, checkpoint_commits and wal_limit_bytes must be >= 1")
        self.path = Path(path)
        """The database file."""
        self.segment_dir = self.path.with_name(self.path.name + "-segments")
        """The directory of the payload segments."""
        self._wal_path = self.path.with_name(self.path.name + "-wal")
        self.fsync = FsyncPolicy(fsync)
        """The commit durability in force."""
        self.max_group_records = max_group_records
        self.max_group_bytes = max_group_bytes
        self.max_pending_bytes = max_pending_bytes
        self.checkpoint_commits = checkpoint_commits
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
            self._segments = SegmentFiles(
                self.segment_dir, limit=segment_bytes, sync=self.fsync is FsyncPolicy.ALWAYS
            )
        except BlockingIOError as exc:
            self._db.close()
            raise LogOpenError("in use by another ObservationLog", path=self.path) from exc
        except OSError as exc:
            self._db.close()
            raise LogOpenError(f"segment directory: {exc}", path=self.path) from exc
        try:
            self._stats.lost_on_open = self._recover_segments()
            self._load_aggregates()
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            self._checkpoint_db = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._checkpoint_db.execute(f"PRAGMA synchronous={self.fsync.pragma}")
        except BaseException as exc:
            self._segments.close()
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                raise self._open_error(exc) from exc
            if isinstance(exc, OSError):
                raise LogOpenError(f"segment directory: {exc}", path=self.path) from exc
            raise
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
                self._migrate(db, [_SCHEMA])
            elif version not in READABLE_SCHEMA_VERSIONS or "batches" not in tables:
                raise LogCorruptError(
                    f"foreign schema (user_version={version}, tables={sorted(tables)})",
                    path=self.path,
                )
            elif version < SCHEMA_VERSION:  # inline payloads only: add the segment columns
                self._migrate(
                    db, [f"ALTER TABLE batches ADD COLUMN {c} INTEGER" for c in _SEGMENT_COLUMNS]
                )
            columns = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
            if not columns.issuperset(_COLUMNS):
                raise LogCorruptError(f"foreign schema (batches{sorted(columns)})", path=self.path)
        except sqlite3.Error as exc:
            db.close()
            raise self._open_error(exc) from exc
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection, statements: list[str]) -> None:
        """Run ``statements`` and set the schema version, in one transaction."""
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _segment_ends(self) -> dict[int, int]:
        """Segment number -> end of the last byte a committed row references in it."""
        rows = self._db.execute(
            "SELECT segment, max(offset + length) FROM batches"
            " WHERE segment IS NOT NULL GROUP BY segment"
        )
        return {int(segment): int(end) for segment, end in rows}

    def _recover_segments(self) -> int:
        """Make the segment files and the committed rows agree; rows deleted."""
        segments = self._segments
        sizes = segments.sizes()
        ends = self._segment_ends()
        short = {s: sizes.get(s) for s, end in ends.items() if sizes.get(s, -1) < end}
        lost = 0
        if short:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for segment, size in short.items():
                    if size is None:  # the file is gone
                        cur = self._db.execute("DELETE FROM batches WHERE segment = ?", (segment,))
                    else:
                        cur = self._db.execute(
                            "DELETE FROM batches WHERE segment = ? AND offset + length > ?",
                            (segment, size),
                        )
                    lost += cur.rowcount
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            logging.getLogger("edgeswarm.gateway").warning(
                "observation log records lost: their segment bytes are missing",
                extra={"lost": lost, "segments": sorted(short), "path": str(self.path)},
            )
            ends = self._segment_ends()
        newest = max(ends, default=0)
        dropped = segments.resume(
            newest, ends.get(newest, 0), sizes, sync=self.fsync is not FsyncPolicy.OFF
        )
        if dropped:
            logging.getLogger("edgeswarm.gateway").info(
                "observation log dropped uncommitted segment bytes",
                extra={"bytes": dropped, "path": str(self.path)},
            )
        return lost

    def _load_aggregates(self) -> None:
        rows = self._db.execute(
            "SELECT edge_id, count(*), total(count), total(coalesce(length, length(payload))),"
            " max(seq) FROM batches GROUP BY edge_id"
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
            for (seq,) in self._db.execute(
                "SELECT seq FROM batches WHERE edge_id = ? AND (seq > ? OR seq < 1)",
                (edge_id, state.high_water + 1),
            ):
                (state.above if seq > 0 else state.below).add(int(seq))
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
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        self.append_then(edge_id, seq, tick, count, payload, functools.partial(_settle, future))
        return future

    def append_then(
        self,
        edge_id: str,
        seq: int,
        tick: int,
        count: int,
        payload: bytes,
        on_done: Callable[[Outcome], None],
        after_group: Callable[[], None] | None = None,
    ) -> None:
        """Queue one batch; ``on_done(outcome)`` runs on this event loop once its group
        committed (an :class:`AppendResult`) or failed (the :class:`LogWriteError`).

        :meth:`append` without a future per record: one loop callback per group
        runs the ``on_done`` of all its records, in the order they were queued,
        then every distinct ``after_group`` hook of those records once, in the
        same turn of the loop: a gateway acknowledges a whole group and
        transmits the acks before its loop reads the socket again. Call on the
        event loop thread. Raises :class:`LogOverloaded` or :class:`LogClosed`
        at once, queuing nothing.
        """
        record = LogRecord(edge_id, seq, tick, count, bytes(payload), time.time())
        loop = asyncio.get_running_loop()
        self._enqueue(_Entry(record, loop=loop, on_loop=on_done, after_group=after_group))

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
        self._segments.close()

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
        """Write the new records of ``group`` (payloads, then index rows), then report."""
        started = time.perf_counter()
        # Only this thread changes _edges, so it reads them without the lock.
        fresh: list[bool] = []
        seen: set[tuple[str, int]] = set()
        for entry in group:
            r = entry.record
            state = self._edges.get(r.edge_id)
            new = (r.edge_id, r.seq) not in seen and (state is None or not state.holds(r.seq))
            if new:
                seen.add((r.edge_id, r.seq))
            fresh.append(new)
        records = [e.record for e, new in zip(group, fresh, strict=True) if new]
        payloads = [r.payload for r in records if r.payload]
        outcomes: list[Outcome]
        start: int | None = None
        try:
            segment = offset = 0
            if payloads:
                segment, start = self._segments.start_group()
                self._segments.append(payloads)
                offset = start
            rows: list[_Row] = []
            for r in records:
                where: tuple[int | None, int | None, int | None, int | None]
                if r.payload:  # written above, back to back from `start`
                    where = (segment, offset, len(r.payload), checksum(r.payload))
                    offset += len(r.payload)
                else:  # no bytes to separate: an empty payload stays inline
                    where = (None, None, None, None)
                rows.append((r.edge_id, r.seq, r.tick, r.count, b"", r.received_at, *where))
            inserted = iter(self._insert(rows) if rows else [])
            applied = [new and next(inserted) for new in fresh]
        except Exception as exc:
            if start is not None:
                self._segments.rewind(start)
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
            if rows:
                self._since_checkpoint += 1
                if self._since_checkpoint >= self.checkpoint_commits:
                    self._since_checkpoint = 0
                    self._checkpoint_wake.set()
                if not self._wal_full and self._wal_file_bytes() > self.wal_limit_bytes:
                    self._wal_full = True  # the checkpointer is behind: restart it ourselves
        self._report(group, outcomes)

    def _wal_file_bytes(self) -> int:
        """Size of the ``-wal`` file: a restart truncates it to ``wal_limit_bytes``
        (``journal_size_limit``); past that it grows only if no restart came."""
        try:
            return self._wal_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _insert(self, rows: list[_Row]) -> list[bool]:
        """Insert and commit the index rows in one transaction; which ones were new."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.executemany(_INSERT, rows)
            if cur.rowcount == len(rows):
                inserted = [True] * len(rows)
            else:  # another connection wrote some of these keys: which rows are ours?
                inserted = [
                    db.execute(
                        "SELECT 1 FROM batches WHERE edge_id = ? AND seq = ?"
                        " AND received_at = ? AND segment IS ? AND offset IS ?",
                        (row[0], row[1], row[5], row[6], row[7]),
                    ).fetchone()
                    is not None
                    for row in rows
                ]
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return inserted

    @staticmethod
    def _report(group: list[_Entry], outcomes: list[Outcome]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Outcome], None], Outcome]]]
        by_loop = {}
        hooks: dict[asyncio.AbstractEventLoop, dict[Callable[[], None], None]] = {}
        for entry, outcome in zip(group, outcomes, strict=True):
            if entry.on_done is not None:
                try:
                    entry.on_done(outcome)
                except Exception:  # a caller's bug must not kill the writer
                    logging.getLogger("edgeswarm.gateway").exception(
                        "observation log callback failed"
                    )
            if entry.loop is not None and entry.on_loop is not None:
                by_loop.setdefault(entry.loop, []).append((entry.on_loop, outcome))
                after = hooks.setdefault(entry.loop, {})
                if entry.after_group is not None:
                    after[entry.after_group] = None
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
                loop.call_soon_threadsafe(_run_on_loop, batch, hooks[loop])

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
        ``next()``) and its own segment descriptor, so it never blocks the
        writer and may run on any thread. Raises :class:`LogRecordCorrupt` at a
        payload whose bytes are short or fail their checksum.
        """
        db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        current: tuple[int, int, Path] | None = None  # segment last read from: number, fd, file
        try:
            cur = db.execute(
                "SELECT edge_id, seq, tick, count, payload, received_at, segment, offset, length,"
                " xxh3 FROM batches WHERE edge_id = ? AND seq >= ? ORDER BY seq",
                (edge_id, from_seq),
            )
            for edge, seq, tick, count, inline, received_at, segment, offset, length, xxh3 in cur:
                if segment is None:
                    yield LogRecord(edge, seq, tick, count, bytes(inline), received_at)
                    continue
                if current is None or current[0] != segment:
                    if current is not None:
                        os.close(current[1])
                        current = None
                    path = self._segments.path(segment)
                    try:
                        current = (segment, os.open(path, os.O_RDONLY), path)
                    except FileNotFoundError as exc:
                        raise LogRecordCorrupt(
                            "segment file missing",
                            edge_id=edge,
                            seq=seq,
                            segment=segment,
                            offset=offset,
                            path=path,
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

    def close(self) -> None:
        """Write everything already queued, report it, stop the writer. Idempotent."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join()
