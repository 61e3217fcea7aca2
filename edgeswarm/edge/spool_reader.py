"""Reading the spool back: batches to send, checked, and the quarantine of those that fail.

:meth:`SpoolReader.pending` serves the newest payloads from memory (the bytes
encoded in this process) and reads the others from their segment (or their
row, for a batch spooled by version 3 or earlier); every batch read back from
disk is checked against its checksum (``spool_records.batch_problem``) before
it may be sent. :meth:`SpoolReader.quarantine` moves a batch, with its bytes,
to the ``quarantine`` table: never sent again, counted, logged, and told to
``on_quarantine`` (or kept until one is set).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from .spool_errors import storage_errors
from .spool_file import move_to_quarantine, read_row
from .spool_held import Held, HeldBatches
from .spool_records import QuarantinedBatch, QuarantineReason, UnverifiedCheck, batch_problem
from .spool_segments import SpoolSegments

__all__ = ["SpoolReader"]

logger = logging.getLogger("edgeswarm.edge")


class SpoolReader:
    """Reads held batches back for sending and quarantines those that must not leave."""

    def __init__(
        self,
        db: sqlite3.Connection,
        held: HeldBatches,
        segments: SpoolSegments,
        *,
        path: Path,
        on_quarantine: Callable[[QuarantinedBatch], None] | None,
        check_unverified: UnverifiedCheck | None,
    ) -> None:
        self._db = db
        self._held = held
        self._segments = segments
        self.path = path
        self._on_quarantine = on_quarantine
        self._unreported: list[QuarantinedBatch] = []
        self._check_unverified = check_unverified
        self.quarantined_batches = 0
        """Batches moved to the quarantine over the spool's life (persisted in ``meta``)."""

    @property
    def on_quarantine(self) -> Callable[[QuarantinedBatch], None] | None:
        """Told of every batch moved to the quarantine; one set later is first told of
        those quarantined before."""
        return self._on_quarantine

    @on_quarantine.setter
    def on_quarantine(self, callback: Callable[[QuarantinedBatch], None] | None) -> None:
        self._on_quarantine = callback
        if callback is not None:
            unreported, self._unreported = self._unreported, []
            for batch in unreported:
                callback(batch)

    def _errors(self) -> AbstractContextManager[None]:
        return storage_errors(self.path, self._segments.directory)

    def pending(
        self, after_seq: int, limit: int | None, through: int | None
    ) -> list[tuple[int, bytes]]:
        """Held batches with ``seq > after_seq`` and ``<= through`` (None: any), in seq
        order, at most ``limit``.

        Every batch read back from disk is checked (``spool_records.batch_problem``)
        first: one that fails is quarantined (:meth:`quarantine`) and left out; the
        next ones are still returned.
        """
        wanted = self._held.pending(after_seq, through, limit)
        good: list[tuple[int, bytes]] = []
        for seq in wanted:
            held = self._held.get(seq)
            if held is None:
                continue
            payload, problem = self._read_checked(seq, held)
            if problem is None:
                good.append((seq, payload))
            else:
                self.quarantine(seq, QuarantineReason.CHECKSUM, problem)
        return good

    def _read_checked(self, seq: int, held: Held) -> tuple[bytes, str | None]:
        """Batch ``seq``'s payload and why it must not be sent (None: it may)."""
        with self._errors():
            if held.segment is None:
                row = read_row(self._db, seq)
                payload, from_disk = (row[0] if row else b""), True
            else:
                payload, from_disk = self._segments.read(seq, held.segment, held.offset, held.size)
        if not from_disk:
            return payload, None  # the bytes encoded in this process, never read back
        if len(payload) != held.size:
            return payload, f"{held.size - len(payload)} of its {held.size} bytes are missing"
        return payload, batch_problem(
            seq, held.observations, payload, held.checksum, self._check_unverified
        )

    def quarantine_missing(self, missing: dict[int, int | None]) -> None:
        """At open: quarantine every batch whose bytes are gone from its segment (``missing``:
        segment -> its size, None when the file is gone)."""
        for seq, held in list(self._held.items()):
            size = missing.get(held.segment, -1) if held.segment is not None else -1
            if held.segment in missing and (size is None or held.offset + held.size > size):
                detail = (
                    "its bytes are missing from its segment (an OS crash before the disk had them?)"
                )
                self.quarantine(seq, QuarantineReason.MISSING, detail)

    def quarantine(self, seq: int, reason: QuarantineReason, detail: str) -> bool:
        """Move batch ``seq`` (with its bytes) to the quarantine table: never sent again, not
        held, not acknowledged; counted, logged and told to ``on_quarantine``. False if
        there is no such row."""
        with self._errors():
            row = read_row(self._db, seq)
        if row is None:
            return False
        payload, count, checksum, segment, offset, length = row
        if segment is not None and offset is not None and length is not None:
            try:
                payload = self._segments.read(seq, segment, offset, length)[0]
            except OSError:
                payload = b""  # gone: the row says what is missing
        with self._errors():
            move_to_quarantine(self._db, seq, payload, count, checksum, str(reason), detail)
        held = self._held.remove(seq)
        self._segments.forget(seq)
        if segment is not None:
            with self._errors():
                self._segments.release({segment: 1})
        self.quarantined_batches += 1
        batch = QuarantinedBatch(seq, held.observations if held else count, reason, detail)
        where = {"event": "spool_quarantine", "spool": str(self.path), "seq": seq}
        total = {"quarantined_batches": self.quarantined_batches}
        extra = {**where, "reason": str(reason), "detail": detail, **total}
        logger.warning("spooled batch quarantined: it will not be sent", extra=extra)
        if self._on_quarantine is not None:
            self._on_quarantine(batch)
        else:  # told when on_quarantine is set
            self._unreported.append(batch)
        return True
