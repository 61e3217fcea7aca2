"""The edge's store-and-forward spool: outgoing batches kept on disk until ACKed.

The edge appends every encoded batch payload under its sequence number before
sending it, resends what :meth:`Spool.pending` lists after a reconnect, and
removes a batch when the gateway acknowledges it (:meth:`Spool.ack`, in any
order). Sequence numbers continue across restarts: :meth:`Spool.next_seq` is
persisted, even while the spool is empty.

Storage (the gateway's observation log is the model): a tick's batches are
one group commit (:meth:`Spool.append_many`): their payloads are appended to
a segment file with one ``writev`` (``spool_segments.py``), then one SQLite
transaction (``spool_file.py``) inserts a small row per batch — where its
bytes are, its count, a checksum of seq, count and payload
(``spool_records.py``) — and moves ``next_seq``. The commit is the point a
batch exists: bytes no row references are cut off at open, rows whose bytes
are gone are quarantined (``missing``). Older files are upgraded in place;
their batches stay inline in their rows and are sent from there. The tick
thread never syncs (:class:`~edgeswarm.storage.FsyncPolicy`: ``normal`` and
``off`` survive ``kill -9`` of the edge; ``always`` sends a batch only once a
thread of its own has it on stable storage, :attr:`Spool.durable_through`);
checkpoints run on a thread of their own (only if none of them caught up before
the WAL passed 16 MiB does an append finish one itself). :meth:`Spool.pending` serves the
newest payloads from memory and checks every batch read back from disk
against its checksum (``spool_reader.py``: one that fails is quarantined).

ACKs are cheap: :meth:`Spool.ack` forgets the batch in memory at once; the
rows are deleted in one transaction per ``ack_flush_every`` ACKs (or at
:meth:`Spool.flush`/:meth:`Spool.close`), then every segment no row points
into is deleted whole. A crash can resurrect up to ``ack_flush_every`` ACKed
batches, which are resent: harmless, the gateway deduplicates by
``(edge, seq)``.

The spool is bounded by ``max_bytes`` of payload. When an append would exceed
it, the :class:`OverflowPolicy` decides: ``block`` raises :class:`SpoolFull`
(check :meth:`Spool.would_overflow` first and wait for ACKs), ``drop_oldest``
deletes the oldest batches until it fits, counts them and logs a warning.

A full disk is not an error that stops the edge: every write fails as
:class:`SpoolDiskFull` with nothing of it kept (the segment is cut back, the index
transaction rolled back); appends and ``mark_sent`` raise it and the uplink waits and
retries, as at the ``block`` bound; a flush of ACKed rows that hits it keeps them for the
next flush (at most one try per :data:`DISK_FULL_RETRY_S`).

Errors: one tree, drawn in ``spool_errors.py``.

Not thread-safe: use a spool from one thread (the edge's event loop).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

from edgeswarm.resource import Resource
from edgeswarm.storage import Checkpointer, FsyncPolicy

from .spool_errors import (
    OverflowPolicy,
    PayloadTooLarge,
    SeqOutOfOrder,
    SpoolCorruptError,
    SpoolDiskFull,
    SpoolError,
    SpoolFull,
    SpoolInUse,
    storage_errors,
)
from .spool_file import (
    WAL_LIMIT_BYTES,
    IndexRow,
    delete_ranges,
    insert_group,
    move_aside,
    open_spool_file,
    read_meta,
    set_meta,
)
from .spool_held import DropLog, Held, HeldBatches
from .spool_reader import SpoolReader
from .spool_records import (
    QuarantinedBatch,
    QuarantineReason,
    UnverifiedCheck,
    batch_checksum,
    new_seq_epoch,
)
from .spool_segments import DEFAULT_CACHE_BYTES, DEFAULT_SEGMENT_BYTES, SpoolSegments

__all__ = [
    "OverflowPolicy",
    "PayloadTooLarge",
    "SeqOutOfOrder",
    "Spool",
    "SpoolCorruptError",
    "SpoolDiskFull",
    "SpoolError",
    "SpoolFull",
    "SpoolInUse",
]

logger = logging.getLogger("edgeswarm.edge")

DEFAULT_MAX_BYTES = 256 << 20
"""Bound of a spool's payload bytes unless configured otherwise (256 MiB)."""
CHECKPOINT_COMMITS = 256
"""Commits between two background checkpoints of the index (a few MB of WAL: the same hot
index pages are copied once per checkpoint, not once per commit)."""
DISK_FULL_RETRY_S = 0.5
"""After a flush found the disk full, the next try waits this long (ACKs keep coming)."""
DROP_LOG_INTERVAL_S = 1.0
"""At most one ``spool full`` warning per interval; it counts the drops since the last one."""


class Spool(Resource):
    """Unacknowledged outgoing batches, by sequence number: a SQLite index and segment files."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        overflow: OverflowPolicy | str = OverflowPolicy.BLOCK,
        min_next_seq: int = 1,
        ack_flush_every: int = 64,
        count_of: Callable[[bytes], int] | None = None,
        on_quarantine: Callable[[QuarantinedBatch], None] | None = None,
        check_unverified: UnverifiedCheck | None = None,
        fsync: FsyncPolicy | str = FsyncPolicy.NORMAL,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        """Open (or create) the spool at ``path`` (and its ``path-segments`` directory).

        :param max_bytes: bound on the payload bytes held.
        :param overflow: what to do when an append would exceed it.
        :param min_next_seq: floor for :meth:`next_seq` (e.g. after a quarantine,
            the last seq the gateway reported + 1).
        :param ack_flush_every: delete ACKed rows once this many ACKs are
            outstanding (1: every ACK commits at once).
        :param count_of: the observation count of a payload, for the batches of a
            version-1 file (which stored none) when it is upgraded; used once.
            Without it they count 0.
        :param on_quarantine: told of every batch moved to the quarantine.
        :param check_unverified: checks batches spooled before checksums existed.
        :param fsync: durability of appends (see the module docstring).
        :param segment_bytes: segment size past which the next group starts a new file.
        :param cache_bytes: payload bytes of the newest batches kept in memory.
        :raises SpoolCorruptError: the file is not a usable spool.
        :raises SpoolInUse: another process has it open.
        """
        if max_bytes < 1 or ack_flush_every < 1 or segment_bytes < 1:
            raise ValueError("max_bytes, ack_flush_every and segment_bytes must be >= 1")
        self.path = Path(path)
        """The spool's index file."""
        self.max_bytes = max_bytes
        """Bound on the payload bytes held."""
        self.overflow = OverflowPolicy(overflow)
        """The overflow policy in force."""
        self._flush_after = 0.0
        """No flush before this monotonic time (set when one found the disk full)."""
        self.fsync = FsyncPolicy(fsync)
        """The durability of appends."""
        self.ack_flush_every = ack_flush_every
        """ACKs kept in memory before their rows are deleted."""
        self._count_of = count_of
        self._held = HeldBatches()
        self._db = self._open()
        try:
            self._segments = SpoolSegments(
                self.path,
                segment_bytes=segment_bytes,
                cache_bytes=cache_bytes,
                sync=self.fsync is FsyncPolicy.ALWAYS,
            )
        except BlockingIOError as exc:
            self._db.close()
            raise SpoolInUse(f"{self.path}: in use by another process") from exc
        except OSError as exc:
            self._db.close()
            raise SpoolError(f"{self.path}: cannot open its segments ({exc})") from exc
        self._reader = SpoolReader(
            self._db,
            self._held,
            self._segments,
            path=self.path,
            on_quarantine=on_quarantine,
            check_unverified=check_unverified,
        )
        try:
            self._load(min_next_seq)
            self._checkpointer = Checkpointer(
                self.path,
                synchronous=self.fsync.pragma,
                busy_timeout_s=5.0,
                wal_limit_bytes=WAL_LIMIT_BYTES,
                page_size=int(self._db.execute("PRAGMA page_size").fetchone()[0]),
                thread_name="spool-ckpt",
            )
        except (sqlite3.Error, KeyError, OSError, UnicodeDecodeError) as exc:
            self._segments.close()
            self._db.close()
            raise SpoolCorruptError(f"unreadable spool ({exc!r})", path=self.path) from exc
        self._checkpointer.start()
        self._since_checkpoint = 0
        self._closed = False
        self._drop_log = DropLog(DROP_LOG_INTERVAL_S)

    def _open(self) -> sqlite3.Connection:
        return open_spool_file(
            self.path,
            count_of=self._count_of,
            synchronous="NORMAL" if self.fsync is FsyncPolicy.ALWAYS else self.fsync.pragma,
            corrupt=lambda message: SpoolCorruptError(message, path=self.path),
            failed=lambda message: SpoolError(f"{self.path}: cannot open spool ({message})"),
        )

    def _load(self, min_next_seq: int) -> None:
        """Read the index; make the segments agree with it (``spool_segments.recover``)."""
        ends, rows = self._held.load(
            self._db.execute(
                "SELECT seq, length(payload), count, segment, offset, length, checksum"
                " FROM spool ORDER BY seq"
            )
        )
        meta = read_meta(self._db)
        self._next_seq = max(int(meta["next_seq"]), min_next_seq)
        self._dropped_batches = int(meta["dropped_batches"])
        self._dropped_bytes = int(meta["dropped_bytes"])
        self._reader.quarantined_batches = int(meta["quarantined_batches"])
        self.seq_epoch = int(meta["seq_epoch"])
        """The epoch this spool's ``seq`` numbers belong to (0: a file older than v3)."""
        self._sent_through = int(meta["sent_through"])
        self._reader.quarantine_missing(self._segments.recover(ends, rows))

    @property
    def on_quarantine(self) -> Callable[[QuarantinedBatch], None] | None:
        """Told of every batch moved to the quarantine (after it was logged); one set after
        the spool opened is first told of those quarantined while it opened."""
        return self._reader.on_quarantine

    @on_quarantine.setter
    def on_quarantine(self, callback: Callable[[QuarantinedBatch], None] | None) -> None:
        self._reader.on_quarantine = callback

    def on_durable(self, callback: Callable[[], None] | None) -> None:
        """``always``: ``callback`` is called (from another thread) when more batches are
        on stable storage and may be sent (:attr:`durable_through`)."""
        self._segments.set_on_durable(callback)

    @staticmethod
    def quarantine_file(path: str | Path) -> Path:
        """Move a (corrupt) spool file aside, as ``path.corrupt-<unix-ts>`` with its
        ``-wal``/``-shm`` and segments; return where it went. The spool must not be open."""
        return move_aside(Path(path))

    def _errors(self) -> AbstractContextManager[None]:
        """SQLite and OS errors: a :class:`SpoolError` naming the file (corrupt when damaged)."""
        return storage_errors(self.path, self._segments.directory)

    # ------------------------------------------------------------------ writing

    def would_overflow(self, nbytes: int) -> bool:
        """True if appending payloads of ``nbytes`` would exceed ``max_bytes`` now."""
        return self._held.bytes + nbytes > self.max_bytes

    def would_drop(self, nbytes: int) -> list[tuple[int, int]]:
        """``(seq, count)`` of the batches an append of ``nbytes`` would drop now
        (``drop_oldest`` only; oldest first; usually none)."""
        if self.overflow is not OverflowPolicy.DROP_OLDEST:
            return []
        return [(seq, self._held.count(seq)) for seq in self._held.victims(nbytes, self.max_bytes)]

    def append(self, seq: int, payload: bytes, *, count: int = 0) -> tuple[int, ...]:
        """Store one batch: :meth:`append_many` of a group of one."""
        return self.append_many([(seq, payload, count)])

    def append_many(self, group: Sequence[tuple[int, bytes, int]]) -> tuple[int, ...]:
        """Store the batches ``(seq, payload, count)`` of ``group`` as one group commit,
        committed before returning (durable per :attr:`fsync`).

        Seqs must rise and be ``>= next_seq()``; afterwards ``next_seq()`` is the last
        one + 1. Returns the seqs deleted to make room (``drop_oldest`` only; usually
        empty) — those batches will never be sent or resent.

        :raises SpoolFull: ``block`` policy and the group does not fit now.
        :raises PayloadTooLarge: the group's payloads are larger than ``max_bytes``.
        :raises SeqOutOfOrder: a seq below ``next_seq()`` or the one before it.
        """
        if not group:
            return ()
        size = sum(len(payload) for _, payload, _ in group)
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"payload of {size} bytes exceeds the spool bound of {self.max_bytes} bytes"
            )
        floor = self._next_seq
        for seq, _, _ in group:
            if seq < floor:
                raise SeqOutOfOrder(f"seq {seq} < next_seq {floor}")
            floor = seq + 1
        overflow = self._held.bytes + size - self.max_bytes
        if overflow > 0 and self.overflow is OverflowPolicy.BLOCK:
            raise SpoolFull(needed=size, held=self._held.bytes, max_bytes=self.max_bytes)
        dropped = self._held.victims(size, self.max_bytes) if overflow > 0 else []
        dropped_bytes = self._held.size_of(dropped)
        if self._checkpointer.wal_full:  # rare: no background checkpoint caught up
            # the edge's loop: never wait for the nice-19 thread's checkpoint (seconds under
            # load, every tick stalled); the WAL stays marked full, the next group retries
            self._checkpointer.restart_wal(self._db, wait=False)
        seqs = [seq for seq, _, _ in group]
        with self._errors():
            segment, offsets = self._segments.write([(seq, p) for seq, p, _ in group])
        rows: list[IndexRow] = [
            (seq, count, batch_checksum(seq, count, payload), segment, offset, len(payload))
            for (seq, payload, count), offset in zip(group, offsets, strict=True)
        ]
        try:
            with self._errors():
                insert_group(
                    self._db,
                    rows,
                    next_seq=seqs[-1] + 1,
                    drop_through=dropped[-1] if dropped else None,
                    dropped=(len(dropped), dropped_bytes),
                )
        except BaseException:
            self._segments.rewind_group(segment, offsets, seqs)
            raise
        self._next_seq = seqs[-1] + 1
        self._segments.committed(seqs[-1])
        self._count_commit()
        if dropped:
            for old in dropped:
                self._segments.forget(old)
            # the delete took every ACKed-but-unflushed row below the last dropped one too
            with self._errors():
                self._segments.release(self._held.drop_through(dropped[-1]))
        for (seq, payload, count), offset, row in zip(group, offsets, rows, strict=True):
            self._held.add(seq, Held(len(payload), count, segment, offset, row[2]))
        if dropped:
            self._dropped(group[-1][0], dropped, dropped_bytes)
        return tuple(dropped)

    def _count_commit(self) -> None:
        self._since_checkpoint += 1
        if self._since_checkpoint >= CHECKPOINT_COMMITS:
            self._since_checkpoint = 0
            self._checkpointer.request()

    def _dropped(self, seq: int, dropped: list[int], dropped_bytes: int) -> None:
        """Count the batches ``drop_oldest`` deleted; at most one warning per second."""
        self._dropped_batches += len(dropped)
        self._dropped_bytes += dropped_bytes
        self._drop_log.add(
            dropped, dropped_bytes, time.monotonic(),
            spool=str(self.path), seq=seq, spool_bytes=self._held.bytes,
            max_bytes=self.max_bytes, total=self._dropped_batches,
        )  # fmt: skip

    def ack(self, seq: int) -> bool:
        """Forget batch ``seq``: it is no longer pending, counted or sized.

        Returns False if it was not held (already ACKed, dropped, unknown). The
        row is deleted at the next flush (see the module docstring).
        """
        if self._held.ack(seq) is None:
            return False
        self._segments.forget(seq)
        if self._held.acked >= self.ack_flush_every:
            self.flush()
        return True

    def ack_through(self, seq: int) -> int:
        """Forget every batch with seq ``<= seq`` (a cumulative ACK); return how many."""
        gone = self._held.ack_through(seq)
        for old in gone:
            self._segments.forget(old)
        if self._held.acked >= self.ack_flush_every:
            self.flush()
        return len(gone)

    def flush(self) -> None:
        """Delete the rows of every ACKed batch in one transaction, then every segment no
        row points into any more."""
        if not self._held.acked or time.monotonic() < self._flush_after:
            return
        ranges, segments = self._held.acked_rows()
        try:
            with self._errors():  # failed: the same ACKs are deleted by the next flush
                delete_ranges(self._db, ranges)
        except SpoolDiskFull as exc:
            self._flush_after = time.monotonic() + DISK_FULL_RETRY_S
            logger.warning(
                "spool disk full; acknowledged batches are deleted at a later flush",
                extra={"spool": str(self.path), "acked": self._held.acked, "error": str(exc)},
            )
            return
        self._flush_after = 0.0
        self._held.acked_deleted()
        self._count_commit()
        with self._errors():
            self._segments.release(segments)

    # ------------------------------------------------------------------ reading

    @property
    def durable_through(self) -> int | None:
        """``always``: the highest seq on stable storage (nothing above it is sent);
        None under the other policies."""
        return self._segments.durable_through

    def pending(self, after_seq: int = 0, limit: int | None = None) -> list[tuple[int, bytes]]:
        """Held batches with ``seq > after_seq``, in seq order, at most ``limit`` (under
        ``always``: only those on stable storage); see ``SpoolReader.pending``."""
        return self._reader.pending(after_seq, limit, self._segments.durable_through)

    def quarantine(self, seq: int, reason: QuarantineReason, detail: str) -> bool:
        """Move batch ``seq`` (with its bytes) to the quarantine table: never sent again, not
        held, not acknowledged; counted, logged and told to ``on_quarantine``. False if
        there is no such row."""
        return self._reader.quarantine(seq, reason, detail)

    @property
    def sent_through(self) -> int:
        """Highest seq of this epoch that may have left for the gateway (persisted): a
        gateway holding higher numbers of the epoch got them from someone else."""
        return self._sent_through

    def mark_sent(self, seq: int) -> None:
        """Batches up to ``seq`` are about to be sent (persisted before they leave)."""
        if seq > self._sent_through:
            with self._errors():
                set_meta(self._db, "sent_through", seq)
            self._sent_through = seq

    def start_new_epoch(self) -> int:
        """Number from a new sequence epoch from now on (the held batches go with it):
        another sender uses this one. Returns the new epoch."""
        epoch = new_seq_epoch()
        with self._errors():
            set_meta(self._db, "seq_epoch", epoch)
            set_meta(self._db, "sent_through", 0)
        self.seq_epoch, self._sent_through = epoch, 0
        return epoch

    def count(self, seq: int) -> int:
        """Observations of held batch ``seq`` (0 when it is not held)."""
        return self._held.count(seq)

    def count_through(self, seq: int) -> int:
        """Observations of every held batch with seq ``<= seq``."""
        return self._held.count_through(seq)

    def next_seq(self) -> int:
        """The next sequence number to use: 1 + the highest seq ever appended (persisted)."""
        return self._next_seq

    def __len__(self) -> int:
        """Batches held."""
        return len(self._held)

    @property
    def bytes(self) -> int:
        """Payload bytes held."""
        return self._held.bytes

    @property
    def quarantined_batches(self) -> int:
        """Batches moved to the quarantine over the spool's life (persisted)."""
        return self._reader.quarantined_batches

    @property
    def dropped_batches(self) -> int:
        """Batches deleted by ``drop_oldest`` over the spool's life (persisted)."""
        return self._dropped_batches

    @property
    def dropped_bytes(self) -> int:
        """Payload bytes deleted by ``drop_oldest`` over the spool's life (persisted)."""
        return self._dropped_bytes

    def close(self) -> None:
        """Delete ACKed rows (:meth:`flush`), sync what is due, close the files. Idempotent."""
        if not self._closed:
            try:
                self._flush_after = 0.0  # a last try, even right after a full disk
                self.flush()
            finally:
                self._closed = True
                self._checkpointer.stop()
                self._segments.close()
                self._db.close()
