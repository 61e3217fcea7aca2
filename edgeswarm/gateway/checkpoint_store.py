"""The agents' last checkpoints: columnar blocks in ``placement.db``, indexed in memory.

Every stored CHECKPOINT frame is one row of ``checkpoint_blocks`` (ids, ticks
and state as little-endian arrays, like on the wire): one INSERT per frame,
whatever its size, instead of one upsert per agent (which cost the gateway's
loop ~4 µs per row: 0.4 s for a 100 000-agent checkpoint). The newest row of
each agent is kept in memory (numpy columns sorted by agent id), rebuilt from
the blocks, oldest first, when the file is opened. A block none of whose rows
is any agent's newest any more is deleted in the same transaction, so the
file holds at most about one block per live checkpoint frame.

A row older than the one kept (smaller tick) is ignored: checkpoints of an
agent never go back.

Blocks are committed without an fsync (``synchronous=NORMAL`` in WAL mode, for
these transactions only; the rest of ``placement.db`` keeps ``FULL``): a
process crash loses nothing, a power cut may lose the newest blocks, and the
agents then resume from the checkpoint before (one interval more of staleness,
docs/operations.md). The fsync cost 29 ms of the gateway's loop per
65,536-row block, 5 ms without.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeswarm.storage import transaction

from .agent_ids import consecutive_rows, dense_table

__all__ = ["BLOCKS_TABLE", "CheckpointIndex"]

BLOCKS_TABLE = """CREATE TABLE checkpoint_blocks (
    block INTEGER PRIMARY KEY,
    edge_id TEXT NOT NULL,
    at REAL NOT NULL,
    rows INTEGER NOT NULL,
    width INTEGER NOT NULL,
    ids BLOB NOT NULL,
    ticks BLOB NOT NULL,
    state BLOB NOT NULL
)"""


@contextmanager
def _without_fsync(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("PRAGMA synchronous=NORMAL")
    try:
        yield
    finally:
        db.execute("PRAGMA synchronous=FULL")


class CheckpointIndex:
    """The newest checkpoint row of every agent (memory), kept durable in blocks (SQLite)."""

    def __init__(
        self, db: sqlite3.Connection, errors: Callable[[], AbstractContextManager[None]]
    ) -> None:
        self._db = db
        self._errors = errors
        self._edges: list[str] = []
        self.ids = np.empty(0, dtype=np.uint32)
        self.ticks = np.empty(0, dtype=np.uint64)
        self.state = np.zeros((0, 0), dtype=np.float32)
        self.edge = np.empty(0, dtype=np.int32)
        self.at = np.empty(0, dtype=np.float64)
        self.block = np.empty(0, dtype=np.int64)
        self._dense: NDArray[np.int32] | None = None
        """Agent id -> row (:func:`dense_table`); None when the ids are too sparse."""
        self._block_rows: dict[int, int] = {}
        """Block -> how many agents' newest rows it holds (a block at 0 is deleted)."""
        with errors():
            blocks = db.execute(
                "SELECT block, edge_id, at, rows, width, ids, ticks, state"
                " FROM checkpoint_blocks ORDER BY block"
            ).fetchall()
        for block, edge_id, at, rows, width, ids, ticks, state in blocks:
            self._apply(
                int(block),
                edge_id,
                float(at),
                np.frombuffer(ids, dtype="<u4"),
                np.frombuffer(ticks, dtype="<u8"),
                np.frombuffer(state, dtype="<f4").reshape(rows, width),
            )

    # --- writes ---------------------------------------------------------------

    def save(
        self,
        edge_id: str,
        ids: NDArray[np.uint32],
        ticks: NDArray[np.uint64],
        state: NDArray[np.float32],
    ) -> int:
        """Keep these rows (newer than the ones kept) as one durable block; the rows kept.
        ``ids`` are unique (a CHECKPOINT frame's are)."""
        ids = np.ascontiguousarray(ids, dtype="<u4")
        ticks = np.ascontiguousarray(ticks, dtype="<u8")
        state = np.ascontiguousarray(state, dtype="<f4")
        run = consecutive_rows(ids, self._dense)  # the common case: one edge's run of agents
        if run is None or not bool(np.all(ticks >= self.ticks[run])):
            run = None
            newer = ticks >= self._ticks_of(ids)
            ids, ticks, state = ids[newer], ticks[newer], state[newer]
        if not ids.size:
            return 0
        at = time.time()
        superseded = self._superseded_by(self._rows_kept(ids) if run is None else run)
        with self._errors(), _without_fsync(self._db), transaction(self._db) as db:
            cursor = db.execute(
                "INSERT INTO checkpoint_blocks (edge_id, at, rows, width, ids, ticks, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (edge_id, at, int(ids.size), int(state.shape[1]), ids.data, ticks.data,
                 state.data),
            )  # fmt: skip
            db.executemany(
                "DELETE FROM checkpoint_blocks WHERE block = ?", ((b,) for b in superseded)
            )
        # memory follows only what was committed (nothing to undo when the commit fails)
        self._apply(int(cursor.lastrowid or 0), edge_id, at, ids, ticks, state, run)
        return int(ids.size)

    def _rows_kept(self, ids: NDArray[np.uint32]) -> NDArray[np.intp]:
        """The rows of those of ``ids`` that have a row kept."""
        rows, found = self._rows_of(ids)
        return rows[found]

    def _superseded_by(self, rows: slice | NDArray[np.intp]) -> list[int]:
        """Blocks that hold no agent's newest row once ``rows`` have newer rows elsewhere."""
        old, replaced = np.unique(self.block[rows], return_counts=True)
        return [
            block
            for block, count in zip(old.tolist(), replaced.tolist(), strict=True)
            if block >= 0 and self._block_rows[block] == count
        ]

    def _apply(
        self,
        block: int,
        edge_id: str,
        at: float,
        ids: NDArray[np.uint32],
        ticks: NDArray[np.uint64],
        state: NDArray[np.float32],
        run: slice | None = None,
    ) -> None:
        """Make these rows the newest of their agents in memory (``run``: their rows, all
        kept already and all newer)."""
        if edge_id not in self._edges:
            self._edges.append(edge_id)
        if state.shape[1] > self.state.shape[1]:
            wider = np.zeros((self.state.shape[0], state.shape[1]), dtype=np.float32)
            wider[:, : self.state.shape[1]] = self.state
            self.state = wider
        rows: slice | NDArray[np.intp]
        if run is not None:
            rows = run
        else:
            new_ids = np.setdiff1d(ids, self.ids, assume_unique=True)
            if new_ids.size:
                self._grow(new_ids)
            rows = np.searchsorted(self.ids, ids)
            newer = ticks >= self.ticks[rows]
            rows, ticks, state = rows[newer], ticks[newer], state[newer]
        old, replaced = np.unique(self.block[rows], return_counts=True)
        for gone, count in zip(old.tolist(), replaced.tolist(), strict=True):
            if gone >= 0:
                self._block_rows[gone] -= count
                if not self._block_rows[gone]:
                    del self._block_rows[gone]
        self.ticks[rows] = ticks
        if state.shape[1] == self.state.shape[1]:
            self.state[rows] = state
        else:
            self.state[rows] = 0.0
            self.state[rows, : state.shape[1]] = state
        self.edge[rows] = self._edges.index(edge_id)
        self.at[rows] = at
        self.block[rows] = block
        if ticks.size:
            self._block_rows[block] = self._block_rows.get(block, 0) + int(ticks.size)

    def _grow(self, new_ids: NDArray[np.uint32]) -> None:
        ids = np.union1d(self.ids, new_ids)
        at = np.searchsorted(ids, self.ids)

        def grown(column: NDArray[Any], fill: Any) -> NDArray[Any]:
            out = np.full((ids.size, *column.shape[1:]), fill, dtype=column.dtype)
            out[at] = column
            return out

        self.ticks = grown(self.ticks, 0)
        self.state = grown(self.state, 0.0)
        self.edge = grown(self.edge, -1)
        self.at = grown(self.at, 0.0)
        self.block = grown(self.block, -1)
        self.ids = ids
        self._dense = dense_table(ids)

    # --- reads ----------------------------------------------------------------

    def _rows_of(self, ids: NDArray[np.uint32]) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
        rows = np.searchsorted(self.ids, ids)
        found = rows < self.ids.size
        found[found] = self.ids[rows[found]] == ids[found]
        return rows, found

    def _ticks_of(self, ids: NDArray[np.uint32]) -> NDArray[np.uint64]:
        rows, found = self._rows_of(ids)
        ticks = np.zeros(ids.shape[0], dtype=np.uint64)
        ticks[found] = self.ticks[rows[found]]
        return ticks

    def rows(
        self, ids: NDArray[np.uint32], width: int
    ) -> tuple[NDArray[np.uint64], NDArray[np.float32], NDArray[np.bool_]]:
        """Ticks, state rows (``width`` wide) and whether each of ``ids`` has a checkpoint."""
        rows, found = self._rows_of(ids)
        state = np.zeros((ids.shape[0], width), dtype=np.float32)
        cut = min(width, self.state.shape[1])
        state[found, :cut] = self.state[rows[found], :cut]
        return self._ticks_of(ids), state, found

    def one(self, agent_id: int) -> dict[str, Any] | None:
        rows, found = self._rows_of(np.array([agent_id], dtype=np.uint32))
        return None if not found[0] else self._record(int(rows[0]))

    def between(self, first: int, last: int) -> Iterator[tuple[int, dict[str, Any]]]:
        lo, hi = np.searchsorted(self.ids, [first, last + 1])
        for row in range(int(lo), int(hi)):
            yield int(self.ids[row]), self._record(row)

    def _record(self, row: int) -> dict[str, Any]:
        return {
            "edge_id": self._edges[int(self.edge[row])],
            "tick": int(self.ticks[row]),
            "at": float(self.at[row]),
        }

    def oldest(self, of: NDArray[np.uint32]) -> float | None:
        """When the least recent checkpoint of agents ``of`` was taken (None: none yet)."""
        rows, found = self._rows_of(of)
        return float(self.at[rows[found]].min()) if found.any() else None
