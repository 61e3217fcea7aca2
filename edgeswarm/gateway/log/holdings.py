"""What the observation log holds, per edge and sequence epoch; rebuilt at open.

Per edge an :class:`EdgeState` says which ``seq`` numbers are stored, exactly,
in little memory: *runs* of contiguous numbers, one per sequence epoch, plus
the few numbers stored past a gap. The log stores a batch under
``base + seq``, where ``base`` belongs to the edge's sequence epoch (the
spool it was sent from; protocol, ``seq_epoch``): epoch 0 (an edge without
epochs, or a spool older than them) has base 0; a new epoch gets the edge's
highest stored or queued number as base, so its numbers never meet an older
epoch's. :class:`Epochs` keeps the bases (table ``epochs`` of the index) and
which epoch of each edge is the newest: a session of an older one is stale
(its spool came back after a newer one took over) and is refused.

Nothing here is stored apart from ``epochs``: :func:`load_edges` rebuilds the
runs from the index rows, and the log keeps them up to date after each
commit.
"""

from __future__ import annotations

import bisect
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from enum import Enum

from edgeswarm.storage import transaction

from .records import EdgeAggregate, LogRecord

__all__ = ["EdgeState", "EpochStanding", "Epochs", "Holdings", "Run", "load_edges"]

EPOCHS_TABLE = (
    "CREATE TABLE IF NOT EXISTS epochs (edge_id TEXT NOT NULL, seq_epoch INTEGER NOT NULL,"
    " base INTEGER NOT NULL, registered_at REAL NOT NULL, PRIMARY KEY (edge_id, seq_epoch))"
)
"""The one table of the index that is not ``batches``."""


@dataclass(slots=True)
class Run:
    """Stored numbers ``floor+1 .. high``, contiguous (the run of one epoch)."""

    floor: int
    high: int


@dataclass(slots=True)
class EdgeState:
    """What the log holds for one edge: totals, and which sequence numbers."""

    batches: int = 0
    observations: int = 0
    bytes: int = 0
    max_seq: int = 0
    runs: list[Run] = field(default_factory=lambda: [Run(0, 0)])
    """One run per epoch, by floor; the first from 0 (numbers 1..)."""
    above: set[int] = field(default_factory=set)
    """Stored numbers in no run (past a gap of their run)."""
    below: set[int] = field(default_factory=set)
    """Stored numbers below 1 (edges count from 1; kept so :meth:`holds` is exact)."""

    def _run(self, seq: int) -> int:
        """Index of the run ``seq`` (>= 1) belongs to: the last whose floor is below it."""
        return bisect.bisect_left(self.runs, seq, key=lambda run: run.floor) - 1

    def add(self, record: LogRecord) -> None:
        """``record`` was committed."""
        self.batches += 1
        self.observations += record.count
        self.bytes += len(record.payload)
        seq = record.seq
        self.max_seq = max(self.max_seq, seq)
        if seq < 1:
            self.below.add(seq)
            return
        index = self._run(seq)
        run = self.runs[index]
        if seq == run.high + 1:
            ceiling = self.runs[index + 1].floor if index + 1 < len(self.runs) else None
            run.high = seq
            while (ceiling is None or run.high < ceiling) and run.high + 1 in self.above:
                run.high += 1
                self.above.discard(run.high)
        elif seq > run.high:
            self.above.add(seq)

    def holds(self, seq: int) -> bool:
        """Whether ``seq`` is committed."""
        if seq < 1:
            return seq in self.below
        return seq <= self.runs[self._run(seq)].high or seq in self.above

    def start_run(self, floor: int) -> None:
        """A new epoch: its numbers start after ``floor`` (>= every number stored).

        Nothing to do when no number was stored since the last run started.
        """
        if floor > self.runs[-1].floor:
            self.runs.append(Run(floor, floor))

    def high_water(self, floor: int = 0) -> int:
        """Highest ``n`` with every number ``floor+1 .. n`` stored (``floor`` when none).

        A run filled up to the next epoch's base goes on into that epoch's run.
        """
        index = bisect.bisect_right(self.runs, floor, key=lambda run: run.floor) - 1
        high = max(self.runs[index].high, floor) if index >= 0 else floor
        for run in self.runs[index + 1 :]:
            if run.floor != high:
                break
            high = run.high
        return high

    def snapshot(self, edge_id: str) -> EdgeAggregate:
        """The public view of this state."""
        return EdgeAggregate(
            edge_id, self.batches, self.observations, self.bytes, self.max_seq, self.high_water()
        )


def load_edges(db: sqlite3.Connection, bases: dict[str, list[int]]) -> dict[str, EdgeState]:
    """Every edge's state, from the committed index rows and the epochs' ``bases``."""
    edges = {}
    rows = db.execute(
        "SELECT edge_id, count(*), total(count), total(coalesce(length, length(payload))),"
        " max(seq) FROM batches GROUP BY edge_id"
    ).fetchall()
    for edge_id, batches, observations, nbytes, max_seq in rows:
        state = EdgeState(int(batches), int(observations), int(nbytes), int(max_seq))
        floors = sorted({0, *bases.get(edge_id, ())})
        state.runs = []
        for i, floor in enumerate(floors):
            ceiling = floors[i + 1] if i + 1 < len(floors) else 2**63 - 1
            # The rows of (floor, ceiling] in order: the run is those whose rank is seq - floor.
            (length,) = db.execute(
                "SELECT count(*) FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS rn"
                " FROM batches WHERE edge_id = ? AND seq > ? AND seq <= ?) WHERE seq - ? = rn",
                (edge_id, floor, ceiling, floor),
            ).fetchone()
            state.runs.append(Run(floor, floor + int(length)))
        outside = " AND ".join("NOT (seq > ? AND seq <= ?)" for _ in state.runs)
        spans = [value for run in state.runs for value in (run.floor, run.high)]
        for (seq,) in db.execute(
            f"SELECT seq FROM batches WHERE edge_id = ? AND {outside}", (edge_id, *spans)
        ):
            (state.above if seq > 0 else state.below).add(int(seq))
        edges[edge_id] = state
    return edges


class EpochStanding(Enum):
    """Where an edge's ``seq_epoch`` stands at the log."""

    CURRENT = "current"
    """The edge's newest epoch (or epoch 0 of an edge that never had another)."""
    NEW = "new"
    """Never seen: it becomes the newest when registered."""
    STALE = "stale"
    """Older than the edge's newest: its numbers would meet the newer epoch's."""


class Epochs:
    """The sequence epochs of every edge: their bases and which is the newest."""

    def __init__(self, db: sqlite3.Connection) -> None:
        """Load from the ``epochs`` table of ``db`` (the caller created it)."""
        self._bases: dict[str, dict[int, int]] = {}
        self._newest: dict[str, int] = {}
        for edge_id, epoch, base in db.execute(
            "SELECT edge_id, seq_epoch, base FROM epochs ORDER BY registered_at, base"
        ):
            self._bases.setdefault(edge_id, {})[int(epoch)] = int(base)
            self._newest[edge_id] = int(epoch)

    def bases(self) -> dict[str, list[int]]:
        """Edge -> the bases of its registered epochs (epoch 0's, 0, is implicit)."""
        return {edge: list(epochs.values()) for edge, epochs in self._bases.items()}

    def standing(self, edge_id: str, epoch: int) -> EpochStanding:
        """Where ``epoch`` of ``edge_id`` stands."""
        newest = self._newest.get(edge_id, 0)
        if epoch == newest:
            return EpochStanding.CURRENT
        if epoch == 0 or epoch in self._bases.get(edge_id, {}):
            return EpochStanding.STALE
        return EpochStanding.NEW

    def base(self, edge_id: str, epoch: int) -> int:
        """The base of a current epoch (0 for epoch 0)."""
        return self._bases.get(edge_id, {}).get(epoch, 0)

    def register(self, db: sqlite3.Connection, edge_id: str, epoch: int, base: int) -> None:
        """Make ``epoch`` (new) the edge's newest, with ``base``; committed on return."""
        with transaction(db):
            db.execute(
                "INSERT INTO epochs VALUES (?, ?, ?, ?)", (edge_id, epoch, base, time.time())
            )
        self._bases.setdefault(edge_id, {})[epoch] = base
        self._newest[edge_id] = epoch


class Holdings:
    """Every edge's :class:`EdgeState` and :class:`Epochs`, behind one lock.

    The writer thread asks which records are already held and adds what it
    committed; the event loop asks for high-water marks and registers epochs.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        """Rebuild from the index ``db`` (recovered already)."""
        self._lock = threading.Lock()
        self.epochs = Epochs(db)
        self._edges = load_edges(db, self.epochs.bases())
        self._appended: dict[str, int] = {}
        """Highest number ever queued per edge (committed or not): bases start above it."""

    def appended(self, edge_id: str, seq: int) -> None:
        """``seq`` of ``edge_id`` was queued."""
        with self._lock:
            if seq > self._appended.get(edge_id, 0):
                self._appended[edge_id] = seq

    def fresh(self, records: list[LogRecord]) -> list[bool]:
        """Which of ``records`` are neither stored nor repeated earlier in the list."""
        seen: set[tuple[str, int]] = set()
        out = []
        with self._lock:
            for r in records:
                state = self._edges.get(r.edge_id)
                key = (r.edge_id, r.seq)
                new = key not in seen and (state is None or not state.holds(r.seq))
                if new:
                    seen.add(key)
                out.append(new)
        return out

    def committed(self, records: list[LogRecord]) -> None:
        """``records`` (new ones) were committed."""
        with self._lock:
            for r in records:
                self._edges.setdefault(r.edge_id, EdgeState()).add(r)

    def snapshot(self) -> dict[str, EdgeAggregate]:
        with self._lock:
            return {edge_id: s.snapshot(edge_id) for edge_id, s in self._edges.items()}

    def high_water(self, edge_id: str, floor: int = 0) -> int:
        with self._lock:
            state = self._edges.get(edge_id)
            return state.high_water(floor) if state is not None else floor

    def count(self) -> int:
        with self._lock:
            return sum(s.batches for s in self._edges.values())

    def standing(self, edge_id: str, epoch: int) -> EpochStanding:
        with self._lock:
            return self.epochs.standing(edge_id, epoch)

    def open_epoch(self, db: sqlite3.Connection, edge_id: str, epoch: int) -> int:
        """The base of ``epoch`` of ``edge_id``, registering it (committed in ``db``) when
        new: above every number the edge ever queued. The caller checked it is not stale."""
        with self._lock:
            if self.epochs.standing(edge_id, epoch) is not EpochStanding.NEW:
                return self.epochs.base(edge_id, epoch)
            state = self._edges.setdefault(edge_id, EdgeState())
            base = max(state.max_seq, self._appended.get(edge_id, 0), 0)
            self.epochs.register(db, edge_id, epoch, base)
            state.start_run(base)
            return base
