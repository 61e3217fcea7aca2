"""The agents' last checkpoints: columnar blocks in ``checkpoints.db``, indexed in memory.

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

The blocks have a file of their own beside ``placement.db`` (which keeps the
operator's decisions, ``synchronous=FULL``), made for them: 64 KiB pages (a
2 MB block spans 32 pages, not 500: inserting and deleting one cost the
gateway's loop ~17 ms per 100 000 rows with 4 KiB pages, ~4 ms with these),
automatic WAL checkpoints off and a :class:`~edgeswarm.storage.Checkpointer`
thread running them instead, and commits without an fsync
(``synchronous=NORMAL`` in WAL mode): a process crash loses nothing, a power
cut may lose the newest blocks, and the agents then resume from the checkpoint
before (one interval more of staleness, docs/operations.md). Gateways before
this kept the blocks in ``placement.db``; opening moves them here (the same
block numbers, so a move cut short by a crash is simply redone).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeswarm.resource import Resource
from edgeswarm.storage import Checkpointer, Schema, open_database, sqlite_errors, transaction
from edgeswarm.storage.segments import fsync_dir
from edgeswarm.storage.sqlite import ErrorFactory

from .agent_ids import consecutive_rows, dense_table

__all__ = ["CHECKPOINTS_FILE", "CheckpointIndex"]

logger = logging.getLogger("edgeswarm.gateway")

CHECKPOINTS_FILE = "checkpoints.db"
"""The blocks' file, beside ``placement.db``."""
PAGE_SIZE = 65536
WAL_LIMIT_BYTES = 64 << 20
"""The WAL is restarted (by the writer, if the checkpointer thread fell behind) past this."""
WAL_CHECKPOINT_COMMITS = 8
"""Commits between two background WAL checkpoints (~16 MB of blocks at 100 000 agents)."""

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
SCHEMA = Schema(version=1, create=(BLOCKS_TABLE,), tables=frozenset({"checkpoint_blocks"}))
_COLUMNS = "block, edge_id, at, rows, width, ids, ticks, state"


class CheckpointIndex(Resource):
    """The newest checkpoint row of every agent (memory), kept durable in blocks (SQLite)."""

    def __init__(
        self,
        path: Path,
        error: ErrorFactory,
        *,
        moved_from: tuple[sqlite3.Connection, Path] | None = None,
    ) -> None:
        """Open (or create) ``path``; blocks still in ``moved_from`` (the open
        ``placement.db`` of an earlier gateway, and its path) are moved into it first.
        Failures are ``error(message)``."""
        self.path = path
        self._error = error
        self._db = open_database(
            path,
            SCHEMA,
            page_size=PAGE_SIZE,
            synchronous="NORMAL",
            pragmas=("PRAGMA wal_autocheckpoint=0", f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}"),
            check_same_thread=False,
            corrupt=lambda message: error(
                f"checkpoint store {path} is not usable: {message}; move it aside and restart"
                " (the agents then resume without their state) or restore it from a backup"
            ),
            failed=lambda message: error(f"checkpoint store {path} cannot be opened: {message}"),
        )
        self._commits = 0
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
        try:
            if moved_from is not None:
                _move_blocks(*moved_from, into=(self._db, path), error=error)
            self._load()
            with self._errors():
                self._wal_checkpointer = Checkpointer(
                    path,
                    synchronous="NORMAL",
                    busy_timeout_s=5.0,
                    wal_limit_bytes=WAL_LIMIT_BYTES,
                    page_size=int(self._db.execute("PRAGMA page_size").fetchone()[0]),
                    thread_name="checkpoints-wal",
                )
        except BaseException:
            self._db.close()
            raise
        self._wal_checkpointer.start()

    def _load(self) -> None:
        """The newest row of every agent from the blocks, oldest block first."""
        with self._errors():
            blocks = self._db.execute(
                f"SELECT {_COLUMNS} FROM checkpoint_blocks ORDER BY block"
            ).fetchall()
        for block, edge_id, at, rows, width, ids, ticks, state in blocks:
            try:
                columns = (
                    np.frombuffer(ids, dtype="<u4"),
                    np.frombuffer(ticks, dtype="<u8"),
                    np.frombuffer(state, dtype="<f4").reshape(rows, width),
                )
                if not columns[0].shape[0] == columns[1].shape[0] == rows:
                    raise ValueError(f"{rows} rows but {columns[0].shape[0]} ids")
            except (TypeError, ValueError) as exc:
                raise self._error(
                    f"checkpoint store {self.path}: block {block} is damaged ({exc}); move the"
                    " file aside and restart (the agents then resume without their state)"
                ) from exc
            self._apply(int(block), edge_id, float(at), *columns)

    def close(self) -> None:
        try:
            self._wal_checkpointer.stop()
        finally:
            self._db.close()

    def _errors(self) -> AbstractContextManager[None]:
        return sqlite_errors(self._error, f"checkpoint store {self.path}")

    def wal_counts(self) -> tuple[int, int, int]:
        """WAL checkpoints run, of them the restarts the writer ran, and failures."""
        return self._wal_checkpointer.counts()

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
        if self._wal_checkpointer.wal_full:  # rare: the checkpointer thread fell behind
            # never waits on the loop for a background checkpoint (nice 19) in progress
            self._wal_checkpointer.restart_wal(self._db, wait=False)
        with self._errors(), transaction(self._db) as db:
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
        self._wal_checkpointer.committed()
        self._commits += 1
        if self._commits % WAL_CHECKPOINT_COMMITS == 0:
            self._wal_checkpointer.request()
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


def _move_blocks(
    older: sqlite3.Connection,
    older_path: Path,
    *,
    into: tuple[sqlite3.Connection, Path],
    error: ErrorFactory,
) -> None:
    """Move the blocks an earlier gateway kept in ``older`` (``placement.db`` at
    ``older_path``) into the checkpoint store ``into``: copied (by block number: a move
    cut short is redone without doubling them), made durable there (its commits skip the
    fsync, so a checkpoint of the WAL and the directory's entry), only then dropped."""
    db, path = into
    with sqlite_errors(error, f"placement store {older_path}"):
        if not older.execute(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'checkpoint_blocks'"
        ).fetchone():
            return
        rows = older.execute(f"SELECT {_COLUMNS} FROM checkpoint_blocks").fetchall()
    with sqlite_errors(error, f"checkpoint store {path}"):
        with transaction(db) as writing:
            writing.executemany(
                f"INSERT OR IGNORE INTO checkpoint_blocks ({_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    try:
        fsync_dir(path.parent)
    except OSError as exc:
        raise error(f"checkpoint store {path}: {exc.strerror}") from exc
    with sqlite_errors(error, f"placement store {older_path}"), transaction(older) as dropping:
        dropping.execute("DROP TABLE checkpoint_blocks")
    logger.info(
        "checkpoint blocks moved into their own file",
        extra={"path": str(path), "blocks": len(rows)},
    )
