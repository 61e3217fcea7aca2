"""Errors and values of the observation log (:mod:`edgeswarm.gateway.log.store`).

Errors (one tree; all are errors *we* hit, none is the peer's fault)::

    ObservationLogError        base of every error of the observation log (an EdgeswarmError)
    ├── LogOpenError           the file could not be opened as a log (``path``)
    │   └── LogCorruptError    the file is not a SQLite database or is damaged
    ├── LogWriteError          a group commit failed; every waiter of it gets this
    ├── LogOverloaded          ``max_pending_bytes`` would be exceeded; not queued
    ├── LogClosed              append/submit after :meth:`ObservationLog.close`
    ├── LogRecordRejected      this one record can never be stored (a value out of range);
    │                          the records queued beside it are not affected
    ├── LogSeqConflict         another record with other bytes is stored under its (edge, seq)
    └── LogRecordCorrupt       read: a payload's bytes are short or fail their checksum

Values: :class:`FsyncPolicy` (how hard a commit is pushed to stable storage),
:class:`AppendResult` (what an append reports), :class:`LogRecord` (one stored
batch), :class:`EdgeAggregate` (what the log holds for one edge) and
:class:`LogStats` (counters). :mod:`~edgeswarm.gateway.log.store`
re-exports all of them.
"""

from __future__ import annotations

import bisect
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeswarm.errors import EdgeswarmError
from edgeswarm.storage import FsyncPolicy

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
    "LogRecordRejected",
    "LogSeqConflict",
    "LogStats",
    "LogWriteError",
    "ObservationLogError",
    "is_environmental",
    "record_problem",
]

INTEGER_RANGE = range(-(2**63), 2**63)
"""What SQLite stores in an INTEGER column (signed 64-bit): ``seq``, ``tick``, ``count``."""


# --------------------------------------------------------------------------- errors


class ObservationLogError(EdgeswarmError):
    """Base of every error of the observation log."""

    reason = "error"
    """Label of ``edgeswarm_gateway_log_refused_batches_total`` when it refuses an append."""


class LogOpenError(ObservationLogError):
    """The log file could not be opened."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        """The database file."""


class LogCorruptError(LogOpenError):
    """The file is not a SQLite database, is damaged, or has a foreign schema.

    Nothing was changed on disk. Recovery is an operator decision: move the
    file (and its ``-wal``/``-shm`` companions and ``-segments`` directory)
    aside and start with an empty log, or restore it from a backup.
    """


class LogWriteError(ObservationLogError):
    """A group commit failed (disk full, I/O error, lock timeout, ...).

    Every record of the group was rolled back; none of them may be
    acknowledged. The log keeps running: later groups are tried again.
    """


class LogOverloaded(ObservationLogError):  # noqa: N818 (it names a state, like LogClosed)
    """Queuing the record would exceed ``max_pending_bytes``; it was not queued."""

    reason = "overloaded"


class LogClosed(ObservationLogError):  # noqa: N818
    """The log is closed (or closing) and accepts no more records."""

    reason = "closed"


class LogRecordRejected(ObservationLogError):  # noqa: N818
    """This record can never be stored: a value out of range, or SQLite refused it.

    Raised at once by :meth:`ObservationLog.append` when a value is out of range
    (:data:`INTEGER_RANGE`)
    (nothing queued), or given to the record's waiter when writing it alone failed
    for a reason of its own (the other records of its group were written). The
    gateway answers the batch with ERROR ``BATCH_REJECTED``.
    """

    def __init__(self, message: str, *, edge_id: str, seq: int) -> None:
        super().__init__(message)
        self.edge_id = edge_id
        """Edge of the rejected record."""
        self.seq = seq
        """Its sequence number."""


class LogSeqConflict(ObservationLogError):  # noqa: N818
    """Another record, with other bytes, is stored (or queued first) under this record's
    ``(edge_id, seq)``: two senders use the same numbers (a cloned spool, one restored
    or rolled back). The record is not stored and must not be acknowledged."""

    def __init__(self, message: str, *, edge_id: str, seq: int) -> None:
        super().__init__(message)
        self.edge_id = edge_id
        """Edge of the conflicting record."""
        self.seq = seq
        """Its sequence number (as stored)."""


def is_environmental(exc: BaseException) -> bool:
    """Whether a failed commit is the disk's or the database's fault (full, locked,
    I/O error, damaged) rather than one record's: then every record would fail."""
    return (
        isinstance(exc, OSError | MemoryError | sqlite3.OperationalError | sqlite3.InternalError)
        or type(exc) is sqlite3.DatabaseError
    )


def record_problem(record: LogRecord) -> str | None:
    """Why ``record`` cannot be stored, or None."""
    if not isinstance(record.edge_id, str) or not record.edge_id:
        return f"edge id {record.edge_id!r} is not a non-empty string"
    for name in ("seq", "tick", "count"):
        value = getattr(record, name)
        if type(value) is not int or value not in INTEGER_RANGE:
            return f"{record.edge_id!r} {name} {value!r} is not a signed 64-bit integer"
    if not isinstance(record.payload, bytes):
        return f"{record.edge_id!r} seq {record.seq}: payload is not bytes"
    return None


class LogRecordCorrupt(ObservationLogError):  # noqa: N818
    """A committed record's payload is short or does not match its XXH3-64 checksum.

    Its index row is intact, the bytes in its segment are not: a damaged disk,
    a file changed by hand, or an OS crash under ``fsync=normal``/``off`` that
    kept a segment's length but not its data. Raised by
    :meth:`ObservationLog.read`; the other records stay readable.
    """

    def __init__(
        self, problem: str, *, edge_id: str, seq: int, segment: int, offset: int, path: Path
    ) -> None:
        super().__init__(
            f"{path}: payload of {edge_id!r} seq {seq} (segment {segment}, offset {offset}):"
            f" {problem}"
        )
        self.edge_id = edge_id
        """Edge of the damaged record."""
        self.seq = seq
        """Its sequence number."""
        self.segment = segment
        """Number of the segment its payload is in."""
        self.offset = offset
        """Where in that segment its payload starts."""
        self.path = path
        """The segment file."""


# --------------------------------------------------------------------------- values


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


COMMIT_SECONDS_BUCKETS: tuple[float, ...] = (
    *(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
"""Upper bounds of the commit-time histogram (``edgeswarm_gateway_log_commit_seconds``)."""


@dataclass(slots=True)
class LogStats:
    """Counters since the log was opened, for metrics export.

    :attr:`ObservationLog.stats` returns a copy; changing it changes nothing.
    """

    commits: int = 0
    """Groups that succeeded (a group of already-stored records only has nothing
    to write and succeeds without a transaction)."""
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
    """Wall time of the last successful group: segment write to COMMIT returned
    (fsyncs included)."""
    commit_seconds_counts: list[int] = field(
        default_factory=lambda: [0] * (len(COMMIT_SECONDS_BUCKETS) + 1)
    )
    """Successful groups by wall time: one count per bucket of
    :data:`COMMIT_SECONDS_BUCKETS` (at most that long), the last one beyond them."""
    commit_seconds_sum: float = 0.0
    """Total wall time of the successful groups."""
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
    page_cache_released_bytes: int = 0
    """Segment bytes taken out of the page cache once on disk (``storage/page_cache.py``)."""
    failed_page_cache_releases: int = 0
    """Releases that failed (those pages stay cached; logged)."""

    def snapshot(self, checkpoints: tuple[int, int, int], releases: tuple[int, int]) -> LogStats:
        """A copy, with the counts the background threads keep: the checkpointer's
        (checkpoints, WAL restarts, failures) and the page cache release's (bytes,
        failures)."""
        return replace(
            self,
            commit_seconds_counts=list(self.commit_seconds_counts),
            checkpoints=checkpoints[0],
            wal_restarts=checkpoints[1],
            failed_checkpoints=checkpoints[2],
            page_cache_released_bytes=releases[0],
            failed_page_cache_releases=releases[1],
        )

    lost_on_open: int = 0
    """Committed records deleted when the log opened because their segment bytes
    were missing (an OS crash under ``fsync=normal``/``off``, or tampering)."""

    def committed(self, records: int, applied: int, nbytes: int, latency_s: float) -> None:
        """A group of ``records`` committed, ``applied`` of them new (``nbytes`` of payload)."""
        self.commits += 1
        self.records += records
        self.applied += applied
        self.duplicates += records - applied
        self.bytes += nbytes
        self.last_commit_latency_s = latency_s
        self.commit_seconds_counts[bisect.bisect_left(COMMIT_SECONDS_BUCKETS, latency_s)] += 1
        self.commit_seconds_sum += latency_s
        self.last_group_records = records
        self.max_group_records = max(self.max_group_records, records)

    @property
    def mean_group_records(self) -> float:
        """Mean records per successful commit."""
        return self.records / self.commits if self.commits else 0.0
