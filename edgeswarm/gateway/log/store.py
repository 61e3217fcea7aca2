"""The gateway's durable observation log: what it acknowledged stays acknowledged.

Every :class:`~edgeswarm.wire.ObservationBatch` the gateway accepts is written
to the log before its ACK goes out. Batches are keyed by ``(edge_id, seq)``; a
batch that is already there is reported as a duplicate and not applied twice,
but it is durable, so the caller acknowledges it too.

Key-value separation (the WiscKey / RocksDB BlobDB design): payloads go to
append-only segment files, written once (``storage/segments.py``); SQLite in WAL mode
holds one small index row per batch and is the commit point (``index.py``).
``docs/operations.md`` lists the files; ``docs/benchmarks.md`` what this
design saves. Around the :class:`ObservationLog` (this module: the queue,
the writer thread, the counters): ``recovery.py`` (opening after a crash),
``storage/checkpoint.py`` (checkpoints off the commit path), ``storage/page_cache.py``
(written segments out of the page cache), ``outcomes.py`` (how waiters hear of
their group), ``reader.py`` (reading back, checksums verified), ``holdings.py``
(which numbers each edge has stored; sequence epochs), ``records.py`` (values
and the error tree), ``metrics.py``.

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
4. inserts the index rows (segment, offset, length, XXH3-64 of the payload) in
   one transaction and commits it (the WAL fsync per :class:`FsyncPolicy`);
5. only then reports (``outcomes.py``): one ``loop.call_soon_threadsafe`` per
   group and event loop, never one per record.

If a step fails, the segment is cut back to where the group started. A
failure of the disk or the database (full, locked, I/O error:
:func:`~.records.is_environmental`) gives every waiter of the group a
:class:`LogWriteError`; any other failure is one record's (a value SQLite
cannot bind), so each record of the group is written alone and only the
culprit fails, with :class:`LogRecordRejected`. Records are checked before
they are queued (:func:`~.records.record_problem`), so that is a last line.
Nothing is ever reported as written that was not committed. Under
``fsync=normal`` steps 2 and 4 are writes into the page cache: an
acknowledged batch survives ``kill -9``, and an OS crash may lose recent
batches (see :class:`FsyncPolicy`). The queue is bounded by
``max_pending_bytes`` (:class:`LogOverloaded`); :attr:`ObservationLog.pending_bytes`
lets the gateway lower credit before that happens.

Errors: one tree, rooted at :class:`ObservationLogError`, drawn in ``records.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from edgeswarm.resource import Resource
from edgeswarm.storage import Checkpointer, SegmentFiles, is_corruption, segment_dir

from .holdings import EpochStanding, Holdings
from .index import Row, checksum, conflicts, index_row, insert_rows, open_index
from .outcomes import Outcome, Pending, report, settle
from .reader import read_records
from .records import (
    AppendResult,
    EdgeAggregate,
    FsyncPolicy,
    LogClosed,
    LogCorruptError,
    LogOpenError,
    LogOverloaded,
    LogRecord,
    LogRecordRejected,
    LogStats,
    LogWriteError,
    ObservationLogError,
    is_environmental,
    record_problem,
)
from .recovery import recover_segments

__all__ = ["ObservationLog"]

logger = logging.getLogger("edgeswarm.gateway")

_STOP = object()


class ObservationLog(Resource):
    """Durable, deduplicating log of observation batches with group commit.

    ``ObservationLog(path)`` opens (or creates) the database and its segment
    directory, checks them, recovers from a crash (``recovery.py``), rebuilds
    the per-edge aggregates and starts the writer thread. Raises
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
        :param segment_bytes: segment size past which the next group starts a new file.
        :param checkpoint_commits: group commits between two background checkpoints.
        :param wal_limit_bytes: WAL size above which the writer finishes a
            checkpoint itself so that the WAL restarts (bounds the ``-wal`` file).
        """
        limits = (max_group_records, max_group_bytes, segment_bytes, checkpoint_commits)
        if min(*limits, wal_limit_bytes) < 1:
            raise ValueError("group, segment, checkpoint and WAL limits must be >= 1")
        self.path = Path(path)
        """The database file."""
        self.segment_dir = segment_dir(self.path)
        """The directory of the payload segments."""
        self.fsync = FsyncPolicy(fsync)
        """The commit durability in force."""
        self.max_group_records = max_group_records
        self.max_group_bytes = max_group_bytes
        self.max_pending_bytes = max_pending_bytes
        self.checkpoint_commits = checkpoint_commits
        self.wal_limit_bytes = wal_limit_bytes

        self._lock = threading.Lock()
        self._stats = LogStats()
        self._pending_records = 0
        self._pending_bytes = 0
        self._closing = False
        self._queue: queue.SimpleQueue[Pending | object] = queue.SimpleQueue()
        self._since_checkpoint = 0

        self._db = open_index(
            self.path,
            fsync=self.fsync,
            busy_timeout_s=busy_timeout_s,
            wal_limit_bytes=wal_limit_bytes,
        )
        try:
            self._segments = SegmentFiles(
                self.segment_dir,
                limit=segment_bytes,
                sync=self.fsync is FsyncPolicy.ALWAYS,
                release_page_cache=True,
            )
        except BlockingIOError as exc:
            self._db.close()
            raise LogOpenError("in use by another ObservationLog", path=self.path) from exc
        except OSError as exc:
            self._db.close()
            raise LogOpenError(f"segment directory: {exc}", path=self.path) from exc
        try:
            self._stats.lost_on_open = recover_segments(
                self._db, self._segments, path=self.path, sync=self.fsync is not FsyncPolicy.OFF
            )
            self._holdings = Holdings(self._db)
            self._busy_timeout_s = busy_timeout_s
            self._checkpointer = Checkpointer(
                self.path,
                synchronous=self.fsync.pragma,
                busy_timeout_s=busy_timeout_s,
                wal_limit_bytes=wal_limit_bytes,
                page_size=int(self._db.execute("PRAGMA page_size").fetchone()[0]),
                thread_name="observation-log-ckpt",
            )
        except BaseException as exc:
            self._segments.close()
            self._db.close()
            if isinstance(exc, sqlite3.Error):
                error = LogCorruptError if is_corruption(exc) else LogOpenError
                raise error(str(exc), path=self.path) from exc
            if isinstance(exc, OSError):
                raise LogOpenError(f"segment directory: {exc}", path=self.path) from exc
            raise
        self._checkpointer.start()
        self._thread = threading.Thread(
            target=self._run_writer, name=f"observation-log:{self.path.name}", daemon=True
        )
        self._thread.start()

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
        self.append_then(edge_id, seq, tick, count, payload, functools.partial(settle, future))
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
        self._enqueue(Pending(record, loop=loop, on_loop=on_done, after_group=after_group))

    def submit(self, record: LogRecord, on_done: Callable[[Outcome], None]) -> None:
        """Queue ``record``; call ``on_done`` once its group committed or failed.

        ``on_done`` runs on the writer thread with an :class:`AppendResult` or
        the :class:`LogWriteError`; it must be quick and must not block (hand
        off with ``loop.call_soon_threadsafe`` if needed). Raises
        :class:`LogOverloaded` or :class:`LogClosed` at once, queuing nothing.
        """
        self._enqueue(Pending(record, on_done=on_done))

    def _enqueue(self, entry: Pending) -> None:
        problem = record_problem(entry.record)
        if problem is not None:
            raise LogRecordRejected(
                f"{self.path}: {problem}", edge_id=entry.record.edge_id, seq=entry.record.seq
            )
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
        self._holdings.appended(entry.record.edge_id, entry.record.seq)

    def _run_writer(self) -> None:
        """Writer thread: take a group, write it in one transaction, report, repeat."""
        carry: Pending | None = None
        stop = False
        while not stop:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if not isinstance(first, Pending):  # _STOP: close() queued it after the last entry
                break
            if self._checkpointer.wal_full:
                self._checkpointer.restart_wal(self._db)
            group = [first]
            nbytes = len(first.record.payload)
            while len(group) < self.max_group_records:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, Pending):
                    stop = True  # write what we have, then exit
                    break
                if nbytes + len(item.record.payload) > self.max_group_bytes:
                    carry = item  # opens the next group
                    break
                group.append(item)
                nbytes += len(item.record.payload)
            self._write_group(group)
        self._checkpointer.stop()
        self._db.close()  # the last connection: SQLite checkpoints and removes the WAL
        self._segments.close()

    def _write_group(self, group: list[Pending]) -> None:
        """Write ``group`` in one transaction and report; a record that cannot be
        stored fails alone (:func:`isolate`), never the records beside it."""
        try:
            outcomes = self._commit(group)
        except Exception as exc:
            if len(group) > 1 and not is_environmental(exc):
                # Something in one record (a value SQLite cannot bind, ...): write
                # each record alone, so that only the culprit fails.
                outcomes = []
                for entry in group:
                    try:
                        outcomes.extend(self._commit([entry]))
                    except Exception as single:
                        outcomes.append(self._failed([entry], single))
            else:
                error = self._failed(group, exc)
                outcomes = [error] * len(group)
        report(group, outcomes)

    def _failed(self, group: list[Pending], exc: Exception) -> ObservationLogError:
        """Count a failed commit of ``group``; the error its waiters get."""
        error: ObservationLogError
        if len(group) == 1 and not is_environmental(exc):
            r = group[0].record
            error = LogRecordRejected(
                f"{self.path}: {r.edge_id!r} seq {r.seq} cannot be stored: {exc}",
                edge_id=r.edge_id,
                seq=r.seq,
            )
        else:
            error = LogWriteError(f"{self.path}: commit of {len(group)} records failed: {exc}")
        error.__cause__ = exc
        logger.error(
            "observation log commit failed",
            extra={"path": str(self.path), "records": len(group), "error": str(exc)},
        )
        with self._lock:
            self._stats.failed_commits += 1
            self._stats.failed_records += len(group)
            self._pending_records -= len(group)
            self._pending_bytes -= sum(len(e.record.payload) for e in group)
        return error

    def _commit(self, group: list[Pending]) -> list[Outcome]:
        """Write the new records of ``group`` (payloads, then index rows) and commit.

        Raises whatever failed, after cutting the segment back; nothing is counted.
        """
        started = time.perf_counter()
        fresh = self._holdings.fresh([entry.record for entry in group])
        records = [e.record for e, new in zip(group, fresh, strict=True) if new]
        payloads = [r.payload for r in records if r.payload]
        start: int | None = None
        try:
            segment = offset = 0
            if payloads:
                segment, start = self._segments.start_group()
                self._segments.append(payloads)
                offset = start
            rows: list[Row] = []
            for r in records:
                where: tuple[int | None, int | None, int | None, int | None]
                if r.payload:  # written above, back to back from `start`
                    where = (segment, offset, len(r.payload), checksum(r.payload))
                    offset += len(r.payload)
                else:  # no bytes to separate: an empty payload stays inline
                    where = (None, None, None, None)
                rows.append(index_row(r, where))
            inserted = iter(insert_rows(self._db, rows) if rows else [])
            applied = [new and next(inserted) for new in fresh]
        except BaseException:
            if start is not None:
                self._segments.rewind(start)
            raise
        duplicates = [e.record for e, new in zip(group, fresh, strict=True) if not new]
        conflicting = conflicts(self._db, duplicates, records)
        outcomes: list[Outcome] = [
            conflicting[(e.record.edge_id, e.record.seq)]
            if not ok and (e.record.edge_id, e.record.seq) in conflicting
            else AppendResult(e.record.edge_id, e.record.seq, ok)
            for e, ok in zip(group, applied, strict=True)
        ]
        new = [e.record for e, ok in zip(group, applied, strict=True) if ok]
        self._holdings.committed(new)
        with self._lock:
            self._stats.committed(
                len(group),
                len(new),
                sum(len(r.payload) for r in new),
                time.perf_counter() - started,
            )
            self._pending_records -= len(group)
            self._pending_bytes -= sum(len(e.record.payload) for e in group)
        if rows:
            self._since_checkpoint += 1
            if self._since_checkpoint >= self.checkpoint_commits:
                self._since_checkpoint = 0
                self._checkpointer.request()
            self._checkpointer.committed()
        return outcomes

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
        background = (self._checkpointer.counts(), self._segments.release_counts())
        with self._lock:
            return self._stats.snapshot(*background)

    @property
    def writable(self) -> bool:
        """Whether the log takes appends: open, and its writer thread running."""
        return not self._closing and self._thread.is_alive()

    def edges(self) -> dict[str, EdgeAggregate]:
        """Per-edge aggregates of everything committed (rebuilt at open)."""
        return self._holdings.snapshot()

    def high_water(self, edge_id: str, base: int = 0) -> int:
        """Contiguous high-water mark of ``edge_id`` in the epoch of ``base``: highest
        ``n`` with ``base+1..n`` all committed (``base`` when none). For base 0 it is
        :attr:`EdgeAggregate.high_water`."""
        return self._holdings.high_water(edge_id, base)

    def count(self) -> int:
        """Distinct batches committed, over all edges."""
        return self._holdings.count()

    def epoch_standing(self, edge_id: str, seq_epoch: int) -> EpochStanding:
        """Whether ``seq_epoch`` is the edge's newest, new, or stale (``holdings.py``)."""
        return self._holdings.standing(edge_id, seq_epoch)

    def open_epoch(self, edge_id: str, seq_epoch: int) -> int:
        """The base of a current or new ``seq_epoch`` of ``edge_id`` (a new one is
        registered, committed, and becomes the newest). Call on the event loop's
        thread after checking :meth:`epoch_standing`. Raises :class:`LogWriteError`."""
        db = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        try:  # a connection of its own, for this rare write: none stays open beside the writer
            db.execute(f"PRAGMA synchronous={self.fsync.pragma}")
            return self._holdings.open_epoch(db, edge_id, seq_epoch)
        except sqlite3.Error as exc:
            raise LogWriteError(f"{self.path}: cannot register a sequence epoch: {exc}") from exc
        finally:
            db.close()

    def read(self, edge_id: str, from_seq: int = 0) -> Iterator[LogRecord]:
        """Committed batches of ``edge_id`` with ``seq >= from_seq``, in seq order, from
        any thread, never blocking the writer (``reader.py``). Raises
        :class:`LogRecordCorrupt` at a row or payload that fails its checksum."""
        return read_records(self.path, self._segments, edge_id, from_seq)

    def close(self) -> None:
        """Write everything already queued, report it, stop the writer. Idempotent."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join()
