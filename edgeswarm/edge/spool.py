"""The edge's store-and-forward spool: outgoing batches kept on disk until ACKed.

The edge appends every encoded batch payload under its sequence number before
sending it, resends what :meth:`Spool.pending` lists after a reconnect, and
removes a batch when the gateway acknowledges it (:meth:`Spool.ack`, in any
order). Sequence numbers continue across restarts: :meth:`Spool.next_seq` is
persisted, even while the spool is empty.

Storage: one SQLite file in WAL mode with ``synchronous=NORMAL`` (16 KiB
pages for new files), opened by :mod:`edgeswarm.storage`. Each row holds a
batch's payload, its observation count and a checksum of the three
(``spool_records.py``; file version 3: a version-2 file is upgraded when
opened and its rows keep no checksum, a version-1 file also gets its counts),
so nothing reads a payload just to count it. :meth:`Spool.pending` checks
every row it returns; a row that fails is moved to the ``quarantine`` table,
counted, logged and reported to ``on_quarantine``, and never sent. The file
also keeps the spool's sequence epoch (``spool_records.new_seq_epoch``;
0 for a file older than version 3).
Every :meth:`Spool.append` is one committed transaction
before it returns. A commit is a ``write()`` into the WAL without fsync, so an
append survives a crash or ``kill -9`` of the edge process; an OS crash or
power loss may roll back the newest appends.

ACKs are cheap: :meth:`Spool.ack` forgets the batch in memory at once (it is
no longer pending, counted or sized) and the rows are deleted in one
transaction per ``ack_flush_every`` ACKs, or at :meth:`Spool.flush` /
:meth:`Spool.close`. A crash can therefore resurrect up to
``ack_flush_every`` ACKed batches, which are then resent; that is harmless
because the gateway deduplicates by ``(edge, seq)``.

The spool is bounded by ``max_bytes`` of payload. When an append would exceed
it, the :class:`OverflowPolicy` decides: ``block`` raises :class:`SpoolFull`
(check :meth:`Spool.would_overflow` first and wait for ACKs), ``drop_oldest``
deletes the oldest batches until it fits, counts them and logs a warning.

Errors (one tree)::

    SpoolError               base of every spool error (an EdgeswarmError)
    ├── SpoolCorruptError    the file is not a usable spool (``path``); see
    │                        :meth:`Spool.quarantine_file`
    ├── SpoolFull            ``block`` policy: the append does not fit now
    ├── PayloadTooLarge      one payload is larger than ``max_bytes`` (also a ValueError)
    └── SeqOutOfOrder        seq is not above every seq appended before (also a ValueError)

Not thread-safe: use a spool from one thread (the edge's event loop).
"""

from __future__ import annotations

import enum
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeswarm.errors import EdgeswarmError
from edgeswarm.resource import Resource
from edgeswarm.storage import is_corruption, transaction

from .spool_file import move_aside, open_spool_file
from .spool_records import (
    QuarantinedBatch,
    QuarantineReason,
    UnverifiedCheck,
    batch_checksum,
    batch_problem,
    new_seq_epoch,
)

__all__ = [
    "OverflowPolicy",
    "PayloadTooLarge",
    "SeqOutOfOrder",
    "Spool",
    "SpoolCorruptError",
    "SpoolError",
    "SpoolFull",
]

logger = logging.getLogger("edgeswarm.edge")

DEFAULT_MAX_BYTES = 256 << 20
"""Bound of a spool's payload bytes unless configured otherwise (256 MiB)."""
DROP_LOG_INTERVAL_S = 1.0
"""At most one ``spool full`` warning per interval; it counts the drops since the last one."""


class SpoolError(EdgeswarmError):
    """Base of every spool error."""


class SpoolCorruptError(SpoolError):
    """The spool file is not a SQLite database, is damaged, or has a foreign schema.

    Nothing was changed on disk. Recovery: ``Spool.quarantine_file(path)`` moves
    it (and its ``-wal``/``-shm`` files) aside, then ``Spool(path)`` starts an
    empty spool. The batches in it are lost to the gateway; sequence numbers
    restart at 1 unless the caller passes ``min_next_seq``.
    """

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        """The spool file."""


class SpoolFull(SpoolError):  # noqa: N818 (names a state, like queue.Full)
    """``block`` policy: the payload does not fit until some batches are ACKed."""

    def __init__(self, *, needed: int, held: int, max_bytes: int) -> None:
        super().__init__(f"spool full: {held} of {max_bytes} bytes held, {needed} more needed")
        self.needed = needed
        """Payload bytes of the refused append."""
        self.held = held
        """Payload bytes held when it was refused."""
        self.max_bytes = max_bytes
        """The spool's bound."""


class PayloadTooLarge(SpoolError, ValueError):  # noqa: N818
    """A single payload is larger than the spool's ``max_bytes``; it can never fit."""


class SeqOutOfOrder(SpoolError, ValueError):  # noqa: N818
    """``append(seq)`` with ``seq < next_seq()``: reused or going backwards."""


class OverflowPolicy(enum.StrEnum):
    """What an append does when the spool would exceed ``max_bytes``."""

    BLOCK = "block"
    """Raise :class:`SpoolFull`; nothing is stored. The caller stops producing
    (or waits for ACKs) and retries."""

    DROP_OLDEST = "drop_oldest"
    """Delete the oldest pending batches until the new one fits; count them in
    :attr:`Spool.dropped_batches` / :attr:`Spool.dropped_bytes` and log a warning."""


class Spool(Resource):
    """Unacknowledged outgoing batches, by sequence number, in one SQLite file."""

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
    ) -> None:
        """Open (or create) the spool at ``path``.

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
        :raises SpoolCorruptError: the file is not a usable spool.
        """
        if max_bytes < 1 or ack_flush_every < 1:
            raise ValueError("max_bytes and ack_flush_every must be >= 1")
        self.path = Path(path)
        """The spool file."""
        self.max_bytes = max_bytes
        """Bound on the payload bytes held."""
        self.overflow = OverflowPolicy(overflow)
        """The overflow policy in force."""
        self.ack_flush_every = ack_flush_every
        """ACKs kept in memory before their rows are deleted."""
        self._count_of = count_of
        self.on_quarantine = on_quarantine
        """Told of every batch moved to the quarantine (after it was logged)."""
        self._check_unverified = check_unverified
        self._held: dict[int, tuple[int, int]] = {}  # seq -> (payload size, count), seq order
        self._acked: list[int] = []  # ACKed seqs whose rows are not deleted yet
        self._db = self._open()
        try:
            for seq, size, count in self._db.execute(
                "SELECT seq, length(payload), count FROM spool ORDER BY seq"
            ):
                self._held[int(seq)] = (int(size), int(count))
            with transaction(self._db) as db:  # a new file gets its epoch
                db.execute("INSERT OR IGNORE INTO meta VALUES ('seq_epoch', ?)", (new_seq_epoch(),))
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            self._bytes = sum(size for size, _ in self._held.values())
            self._next_seq = max(int(meta["next_seq"]), min_next_seq)
            self._dropped_batches = int(meta["dropped_batches"])
            self._dropped_bytes = int(meta["dropped_bytes"])
            self._quarantined_batches = int(meta["quarantined_batches"])
            self.seq_epoch = int(meta["seq_epoch"])
            """The epoch this spool's ``seq`` numbers belong to (0: a file older than v3)."""
            self._sent_through = int(meta["sent_through"])
        except (sqlite3.Error, KeyError) as exc:
            self._db.close()
            raise SpoolCorruptError(f"unreadable spool ({exc!r})", path=self.path) from exc
        self._closed = False
        self._last_drop_log = -DROP_LOG_INTERVAL_S
        self._drops_since_log = 0
        self._drop_bytes_since_log = 0

    def _open(self) -> sqlite3.Connection:
        return open_spool_file(
            self.path,
            count_of=self._count_of,
            corrupt=lambda message: SpoolCorruptError(message, path=self.path),
            failed=lambda message: SpoolError(f"{self.path}: cannot open spool ({message})"),
        )

    @staticmethod
    def quarantine_file(path: str | Path) -> Path:
        """Move a (corrupt) spool file aside, as ``path.corrupt-<unix-ts>`` with its
        ``-wal``/``-shm``; return where it went. The spool must not be open."""
        return move_aside(Path(path))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite errors: a :class:`SpoolError` naming the file (corrupt when damaged)."""
        try:
            yield
        except sqlite3.Error as exc:
            if is_corruption(exc):
                raise SpoolCorruptError(f"damaged ({exc})", path=self.path) from exc
            raise SpoolError(f"{self.path}: {exc}") from exc

    # ------------------------------------------------------------------ writing

    def would_overflow(self, nbytes: int) -> bool:
        """True if appending a payload of ``nbytes`` would exceed ``max_bytes`` now."""
        return self._bytes + nbytes > self.max_bytes

    def would_drop(self, nbytes: int) -> list[tuple[int, int]]:
        """``(seq, count)`` of the batches an append of ``nbytes`` would drop now
        (``drop_oldest`` only; oldest first; usually none)."""
        if self.overflow is not OverflowPolicy.DROP_OLDEST:
            return []
        return [(seq, self._held[seq][1]) for seq in self._victims(nbytes)]

    def _victims(self, nbytes: int) -> list[int]:
        """The oldest held seqs whose payloads must go for ``nbytes`` more to fit."""
        overflow = self._bytes + nbytes - self.max_bytes
        victims: list[int] = []
        freed = 0
        for old_seq, (old_size, _) in self._held.items():  # oldest first
            if freed >= overflow:
                break
            victims.append(old_seq)
            freed += old_size
        return victims

    def append(self, seq: int, payload: bytes, *, count: int = 0) -> tuple[int, ...]:
        """Store ``payload`` (a batch of ``count`` observations) under ``seq``, committed
        before returning.

        ``seq`` must be ``>= next_seq()``; afterwards ``next_seq() == seq + 1``.
        Returns the seqs deleted to make room (``drop_oldest`` only; usually
        empty) — those batches will never be sent or resent.

        :raises SpoolFull: ``block`` policy and the payload does not fit now.
        :raises PayloadTooLarge: ``len(payload) > max_bytes``.
        :raises SeqOutOfOrder: ``seq < next_seq()``.
        """
        size = len(payload)
        if size > self.max_bytes:
            raise PayloadTooLarge(
                f"payload of {size} bytes exceeds the spool bound of {self.max_bytes} bytes"
            )
        if seq < self._next_seq:
            raise SeqOutOfOrder(f"seq {seq} < next_seq {self._next_seq}")
        overflow = self._bytes + size - self.max_bytes
        if overflow > 0 and self.overflow is OverflowPolicy.BLOCK:
            raise SpoolFull(needed=size, held=self._bytes, max_bytes=self.max_bytes)
        dropped = self._victims(size) if overflow > 0 else []
        dropped_bytes = sum(self._held[old_seq][0] for old_seq in dropped)
        with self._errors(), transaction(self._db) as db:
            if dropped:
                # Also deletes every ACKed-but-unflushed row below the last dropped one.
                db.execute("DELETE FROM spool WHERE seq <= ?", (dropped[-1],))
                db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'dropped_batches'",
                    (len(dropped),),
                )
                db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'dropped_bytes'",
                    (dropped_bytes,),
                )
            db.execute(
                "INSERT INTO spool VALUES (?, ?, ?, ?)",
                (seq, payload, count, batch_checksum(seq, count, payload)),
            )
            db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
        self._next_seq = seq + 1
        for old_seq in dropped:
            del self._held[old_seq]
        if dropped:
            self._acked = [s for s in self._acked if s > dropped[-1]]
        self._held[seq] = (size, count)
        self._bytes += size - dropped_bytes
        if dropped:
            self._dropped_batches += len(dropped)
            self._dropped_bytes += dropped_bytes
            now = time.monotonic()
            self._drops_since_log += len(dropped)
            self._drop_bytes_since_log += dropped_bytes
            if now - self._last_drop_log < DROP_LOG_INTERVAL_S:
                return tuple(dropped)
            self._last_drop_log = now
            since, self._drops_since_log = self._drops_since_log, 0
            since_bytes, self._drop_bytes_since_log = self._drop_bytes_since_log, 0
            logger.warning(
                "spool full: dropping the oldest batches (one line per second at most)",
                extra={
                    "event": "spool_drop",
                    "spool": str(self.path),
                    "seq": seq,
                    "dropped_batches": since,
                    "dropped_bytes": since_bytes,
                    "dropped_first_seq": dropped[0],
                    "dropped_last_seq": dropped[-1],
                    "spool_bytes": self._bytes,
                    "max_bytes": self.max_bytes,
                    "dropped_batches_total": self._dropped_batches,
                },
            )
        return tuple(dropped)

    def ack(self, seq: int) -> bool:
        """Forget batch ``seq``: it is no longer pending, counted or sized.

        Returns False if it was not held (already ACKed, dropped, unknown). The
        row is deleted at the next flush (see the module docstring).
        """
        held = self._held.pop(seq, None)
        if held is None:
            return False
        self._bytes -= held[0]
        self._acked.append(seq)
        if len(self._acked) >= self.ack_flush_every:
            self.flush()
        return True

    def ack_through(self, seq: int) -> int:
        """Forget every batch with seq ``<= seq`` (a cumulative ACK); return how many."""
        gone = []
        for held in self._held:  # seq order
            if held > seq:
                break
            gone.append(held)
        for held in gone:
            self._bytes -= self._held.pop(held)[0]
        self._acked.extend(gone)
        if len(self._acked) >= self.ack_flush_every:
            self.flush()
        return len(gone)

    def flush(self) -> None:
        """Delete the rows of every ACKed batch, in one transaction."""
        if not self._acked:
            return
        with self._errors(), transaction(self._db) as db:
            db.executemany("DELETE FROM spool WHERE seq = ?", ((s,) for s in self._acked))
        self._acked.clear()

    # ------------------------------------------------------------------ reading

    def pending(self, after_seq: int = 0, limit: int | None = None) -> list[tuple[int, bytes]]:
        """Held batches with ``seq > after_seq``, in seq order, at most ``limit``.

        Every row is checked (``spool_records.batch_problem``) first: one that
        fails is quarantined (:meth:`quarantine`) and left out; the next ones
        are still returned.
        """
        self.flush()
        with self._errors():
            rows = self._db.execute(
                "SELECT seq, payload, count, checksum FROM spool WHERE seq > ? ORDER BY seq"
                " LIMIT ?",
                (after_seq, -1 if limit is None else limit),
            ).fetchall()
        good: list[tuple[int, bytes]] = []
        for seq, payload, count, checksum in rows:
            seq, payload = int(seq), bytes(payload)
            problem = batch_problem(seq, int(count), payload, checksum, self._check_unverified)
            if problem is None and seq in self._held:
                good.append((seq, payload))
            else:
                self.quarantine(seq, QuarantineReason.CHECKSUM, problem or "not a held batch")
        return good

    def quarantine(self, seq: int, reason: QuarantineReason, detail: str) -> bool:
        """Move batch ``seq`` to the quarantine table: never sent again, not held, not
        acknowledged; counted, logged and told to ``on_quarantine``. False if there
        is no such row."""
        with self._errors(), transaction(self._db) as db:
            moved = db.execute(
                "INSERT OR REPLACE INTO quarantine"
                " SELECT seq, payload, count, checksum, ?, ?, ? FROM spool WHERE seq = ?",
                (str(reason), detail, time.time(), seq),
            ).rowcount
            if not moved:
                return False
            db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'quarantined_batches'")
        held = self._held.pop(seq, None)
        if held is not None:
            self._bytes -= held[0]
        self._quarantined_batches += 1
        batch = QuarantinedBatch(seq, held[1] if held else 0, reason, detail)
        where = {"event": "spool_quarantine", "spool": str(self.path), "seq": seq}
        total = {"quarantined_batches": self._quarantined_batches}
        extra = {**where, "reason": str(reason), "detail": detail, **total}
        logger.warning("spooled batch quarantined: it will not be sent", extra=extra)
        if self.on_quarantine is not None:
            self.on_quarantine(batch)
        return True

    @property
    def sent_through(self) -> int:
        """Highest seq of this epoch that may have left for the gateway (persisted): a
        gateway holding higher numbers of the epoch got them from someone else."""
        return self._sent_through

    def mark_sent(self, seq: int) -> None:
        """Batches up to ``seq`` are about to be sent (persisted before they leave)."""
        if seq > self._sent_through:
            with self._errors(), transaction(self._db) as db:
                db.execute("UPDATE meta SET value = ? WHERE key = 'sent_through'", (seq,))
            self._sent_through = seq

    def start_new_epoch(self) -> int:
        """Number from a new sequence epoch from now on (the held batches go with it):
        another sender uses this one. Returns the new epoch."""
        epoch = new_seq_epoch()
        with self._errors(), transaction(self._db) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = 'seq_epoch'", (epoch,))
            db.execute("UPDATE meta SET value = 0 WHERE key = 'sent_through'")
        self.seq_epoch, self._sent_through = epoch, 0
        return epoch

    def count(self, seq: int) -> int:
        """Observations of held batch ``seq`` (0 when it is not held)."""
        held = self._held.get(seq)
        return held[1] if held is not None else 0

    def count_through(self, seq: int) -> int:
        """Observations of every held batch with seq ``<= seq``."""
        total = 0
        for held, (_, count) in self._held.items():  # seq order
            if held > seq:
                break
            total += count
        return total

    def next_seq(self) -> int:
        """The next sequence number to use: 1 + the highest seq ever appended (persisted)."""
        return self._next_seq

    def __len__(self) -> int:
        """Batches held."""
        return len(self._held)

    @property
    def bytes(self) -> int:
        """Payload bytes held."""
        return self._bytes

    @property
    def quarantined_batches(self) -> int:
        """Batches moved to the quarantine over the spool's life (persisted)."""
        return self._quarantined_batches

    @property
    def dropped_batches(self) -> int:
        """Batches deleted by ``drop_oldest`` over the spool's life (persisted)."""
        return self._dropped_batches

    @property
    def dropped_bytes(self) -> int:
        """Payload bytes deleted by ``drop_oldest`` over the spool's life (persisted)."""
        return self._dropped_bytes

    def close(self) -> None:
        """Delete ACKed rows (:meth:`flush`) and close the file. Idempotent."""
        if not self._closed:
            try:
                self.flush()
            finally:
                self._closed = True
                self._db.close()
