"""The spool's batches in memory: what it holds, in seq order, and what awaits deletion.

:class:`HeldBatches` is the spool's in-memory index (rebuilt from the SQLite
index at open): for every held batch its size, observation count, checksum
and where its bytes are; the payload bytes held; and the ACKed batches whose
rows are not deleted yet. Pure bookkeeping, no I/O; :class:`DropLog` throttles the
``drop_oldest`` warning (one line per interval, with the drops since the last).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

logger = logging.getLogger("edgeswarm.edge")

__all__ = ["DropLog", "Held", "HeldBatches"]


class Held(NamedTuple):
    """Where a held batch is and what it must satisfy."""

    size: int
    """Payload bytes."""
    observations: int
    """Observations in it (the count stored beside it)."""
    segment: int | None
    """Segment of its payload; None: inline in its row (spooled by version 3 or earlier)."""
    offset: int
    """Where its payload starts in the segment."""
    checksum: int | None
    """``spool_records.batch_checksum``; None: spooled before checksums existed."""


class HeldBatches:
    """Held batches by seq (insertion order is seq order), and ACKed ones not yet deleted."""

    def __init__(self) -> None:
        self._held: dict[int, Held] = {}
        self._acked: list[tuple[int, int | None]] = []  # (seq, segment)
        self.bytes = 0
        """Payload bytes held."""

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[int]:
        return iter(self._held)

    def items(self) -> Iterator[tuple[int, Held]]:
        """``(seq, held)`` in seq order."""
        return iter(list(self._held.items()))

    def get(self, seq: int) -> Held | None:
        """Batch ``seq``, or None when it is not held."""
        return self._held.get(seq)

    def load(self, rows: Iterable[tuple[Any, ...]]) -> tuple[dict[int, int], dict[int, int]]:
        """Hold every index row ``(seq, inline length, count, segment, offset, length,
        checksum)``, in seq order; returns per segment the last byte its rows reference
        and how many rows point into it."""
        ends: dict[int, int] = {}
        counts: dict[int, int] = {}
        for seq, inline, count, segment, offset, length, checksum in rows:
            if segment is None:
                self.add(int(seq), Held(int(inline), int(count), None, 0, checksum))
                continue
            self.add(int(seq), Held(int(length), int(count), segment, offset, checksum))
            ends[segment] = max(ends.get(segment, 0), offset + length)
            counts[segment] = counts.get(segment, 0) + 1
        return ends, counts

    def add(self, seq: int, held: Held) -> None:
        """Hold batch ``seq`` (above every seq held)."""
        self._held[seq] = held
        self.bytes += held.size

    def remove(self, seq: int) -> Held | None:
        """Forget batch ``seq`` entirely (quarantined): neither held nor awaiting deletion."""
        held = self._held.pop(seq, None)
        if held is not None:
            self.bytes -= held.size
        self._acked = [(s, g) for s, g in self._acked if s != seq]
        return held

    # --- ACKs -----------------------------------------------------------

    @property
    def acked(self) -> int:
        """ACKed batches whose rows are not deleted yet."""
        return len(self._acked)

    def ack(self, seq: int) -> Held | None:
        """Batch ``seq`` was acknowledged: no longer held, its row awaits deletion."""
        held = self._held.pop(seq, None)
        if held is not None:
            self.bytes -= held.size
            self._acked.append((seq, held.segment))
        return held

    def ack_through(self, seq: int) -> list[int]:
        """Every batch with seq ``<= seq`` was acknowledged; their seqs."""
        gone = []
        for held in self._held:  # seq order
            if held > seq:
                break
            gone.append(held)
        for old in gone:
            self.ack(old)
        return gone

    def acked_rows(self) -> tuple[list[tuple[int, int]], dict[int, int]]:
        """The ACKed rows to delete now, as ``(first, last)`` seq ranges, and how many of
        them point into each segment (they await deletion until :meth:`acked_deleted`)."""
        ranges: list[tuple[int, int]] = []
        for seq, _ in sorted(self._acked):
            if ranges and ranges[-1][1] == seq - 1:
                ranges[-1] = (ranges[-1][0], seq)
            else:
                ranges.append((seq, seq))
        segments = _per_segment(segment for _, segment in self._acked)
        return ranges, segments

    def acked_deleted(self) -> None:
        """The rows :meth:`acked_rows` listed were deleted (the deletion committed)."""
        self._acked.clear()

    # --- overflow -------------------------------------------------------

    def victims(self, nbytes: int, max_bytes: int) -> list[int]:
        """The oldest held seqs whose payloads must go for ``nbytes`` more to fit."""
        overflow = self.bytes + nbytes - max_bytes
        victims: list[int] = []
        freed = 0
        for old_seq, held in self._held.items():  # oldest first
            if freed >= overflow:
                break
            victims.append(old_seq)
            freed += held.size
        return victims

    def drop_through(self, seq: int) -> dict[int, int]:
        """Forget every batch with seq ``<= seq``, held or awaiting deletion (their rows are
        deleted with it); rows per segment that went."""
        gone = [s for s in self._held if s <= seq]
        segments = [self._held[s].segment for s in gone]
        for old in gone:
            self.bytes -= self._held.pop(old).size
        segments += [g for s, g in self._acked if s <= seq]
        self._acked = [(s, g) for s, g in self._acked if s > seq]
        return _per_segment(segments)

    # --- reading --------------------------------------------------------

    def pending(self, after_seq: int, through: int | None, limit: int | None) -> list[int]:
        """Held seqs above ``after_seq`` and at most ``through`` (None: any), at most ``limit``."""
        wanted: list[int] = []
        for seq in self._held:  # seq order
            if seq <= after_seq:
                continue
            if (through is not None and seq > through) or (
                limit is not None and len(wanted) >= limit
            ):
                break
            wanted.append(seq)
        return wanted

    def count(self, seq: int) -> int:
        """Observations of held batch ``seq`` (0 when it is not held)."""
        held = self._held.get(seq)
        return held.observations if held is not None else 0

    def size_of(self, seqs: list[int]) -> int:
        """Payload bytes of the held batches ``seqs``."""
        return sum(self._held[seq].size for seq in seqs)

    def count_through(self, seq: int) -> int:
        """Observations of every held batch with seq ``<= seq``."""
        total = 0
        for held_seq, held in self._held.items():  # seq order
            if held_seq > seq:
                break
            total += held.observations
        return total


class DropLog:
    """Drops counted between two warnings, at most one warning per ``interval_s``."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last = -interval_s
        self._batches = 0
        self._bytes = 0

    def add(self, dropped: list[int], nbytes: int, now: float, **context: Any) -> bool:
        """Count a drop of the seqs ``dropped``; log the drops since the last warning
        (with ``context``) when one is due now. True when it logged."""
        self._batches += len(dropped)
        self._bytes += nbytes
        if now - self._last < self.interval_s:
            return False
        self._last = now
        logger.warning(
            "spool full: dropping the oldest batches (one line per second at most)",
            extra={
                "event": "spool_drop",
                "dropped_batches": self._batches,
                "dropped_bytes": self._bytes,
                "dropped_first_seq": dropped[0],
                "dropped_last_seq": dropped[-1],
                **{("dropped_batches_total" if k == "total" else k): v for k, v in context.items()},
            },
        )
        self._batches = self._bytes = 0
        return True


def _per_segment(segments: Iterator[int | None] | list[int | None]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for segment in segments:
        if segment is not None:
            counts[segment] = counts.get(segment, 0) + 1
    return counts
