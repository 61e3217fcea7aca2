"""``placement.db``: the swarm's agents, the edges' drain marks and weights, the epoch.

The gateway owns the swarm's agent set: each agent has an id (uint32), the
policy it runs, labels (a JSON map) and an optional pin (an edge it is bound
to, e.g. because a device hangs off that edge). Edges are remembered the first
time they connect, with a capacity weight and whether an operator drained
them. The placement epoch survives restarts so that a restarted gateway never
reuses an epoch number. Checkpoints of agents' state rows live beside it in
``checkpoints.db`` (``checkpoint_store.py``: written by the checkpoint path,
read by ``agents show``).

Opened the one way every durable file is (storage/sqlite.py); errors become
:class:`AgentStoreError` naming the file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from edgeswarm.errors import EdgeswarmError
from edgeswarm.resource import Resource
from edgeswarm.storage import Schema, open_operator_store, sqlite_errors, transaction
from edgeswarm.storage.sqlite import statements

from .checkpoint_store import CHECKPOINTS_FILE, CheckpointIndex

__all__ = ["AgentRecord", "AgentStore", "AgentStoreError", "KnownEdge"]

MAX_AGENT_ID = 2**32 - 1
"""Agent ids are uint32 (the edge's ``AgentTable.ids`` column)."""
MAX_ADD = 100_000
"""Most agents one ``add_agents`` call inserts: one transaction the gateway's loop waits
for (~0.1-0.6 s here); larger swarms are added in several calls."""

_AGENTS = """CREATE TABLE agents (
    agent_id INTEGER PRIMARY KEY,
    policy TEXT NOT NULL,
    labels TEXT NOT NULL,
    pin TEXT,
    added_at REAL NOT NULL
)"""
_EDGES = """CREATE TABLE edges (
    edge_id TEXT PRIMARY KEY,
    weight REAL NOT NULL,
    drained INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    updated_at REAL NOT NULL
)"""
_META = "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
SCHEMA = Schema(
    version=3,
    create=(_AGENTS, _EDGES, _META),
    tables=frozenset({"agents", "edges", "meta"}),
    # version 1 had a per-agent checkpoints table nothing ever wrote; version 2 kept the
    # checkpoint blocks here (CheckpointIndex moves them into their own file)
    upgrades={1: statements("DROP TABLE IF EXISTS checkpoints"), 2: statements()},
)


class AgentStoreError(EdgeswarmError):
    """``placement.db`` or ``checkpoints.db`` cannot be opened, read or written, or a
    request contradicts them."""


@dataclass(frozen=True)
class AgentRecord:
    """One swarm agent as the gateway keeps it."""

    agent_id: int
    policy: str
    labels: dict[str, str]
    pin: str | None
    added_at: float


@dataclass(frozen=True)
class KnownEdge:
    """One edge the gateway has seen."""

    edge_id: str
    weight: float
    drained: bool
    first_seen: float


class AgentStore(Resource):
    """The swarm's agents and edges in ``placement.db``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_operator_store(
            path, SCHEMA, label="placement store", error=AgentStoreError, start_over=""
        )
        self.version = 0
        """Bumped on every change of the agent set (the service caches by it)."""
        try:
            self.checkpoints = CheckpointIndex(
                path.with_name(CHECKPOINTS_FILE), AgentStoreError, moved_from=(self._db, path)
            )
            """The agents' last checkpoints (``checkpoint_store.py``, ``checkpoints.db``)."""
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        try:
            self.checkpoints.close()
        finally:
            self._db.close()

    def _errors(self) -> AbstractContextManager[None]:
        return sqlite_errors(AgentStoreError, f"placement store {self.path}")

    # --- agents -------------------------------------------------------------

    def add_agents(
        self,
        first_id: int,
        count: int,
        *,
        policy: str,
        labels: Mapping[str, str] | None = None,
        pin: str | None = None,
    ) -> int:
        """Add agents ``first_id .. first_id + count - 1``; none if any of them exists."""
        last = first_id + count - 1
        if not 1 <= count <= MAX_ADD or first_id < 0 or last > MAX_AGENT_ID:
            raise AgentStoreError(
                f"agent ids must lie in 0..{MAX_AGENT_ID} and count in 1..{MAX_ADD:,}"
            )
        if not policy:
            raise AgentStoreError("an agent needs a policy")
        label_text = json.dumps(dict(labels or {}), sort_keys=True)
        now = time.time()
        with self._errors(), transaction(self._db) as db:
            taken = db.execute(
                "SELECT COUNT(*), MIN(agent_id) FROM agents WHERE agent_id BETWEEN ? AND ?",
                (first_id, last),
            ).fetchone()
            if taken[0]:
                raise AgentStoreError(
                    f"{taken[0]} of agents {first_id}..{last} exist already (first: {taken[1]});"
                    " choose another --first-id"
                )
            db.execute(  # the ids are generated inside SQLite: no Python call per agent
                "WITH RECURSIVE ids(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM ids WHERE x < ?)"
                " INSERT INTO agents SELECT x, ?, ?, ?, ? FROM ids",
                (first_id, last, policy, label_text, pin, now),
            )
        self.version += 1
        return count

    def agent_ids(self) -> NDArray[np.uint32]:
        """Every agent id, ascending."""
        with self._errors():
            rows = self._db.execute("SELECT agent_id FROM agents ORDER BY agent_id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.uint32, count=len(rows))

    def pins(self) -> dict[int, str]:
        """Pinned agents: id -> edge."""
        with self._errors():
            rows = self._db.execute(
                "SELECT agent_id, pin FROM agents WHERE pin IS NOT NULL"
            ).fetchall()
        return {int(a): str(e) for a, e in rows}

    def agent(self, agent_id: int) -> AgentRecord | None:
        with self._errors():
            row = self._db.execute(
                "SELECT agent_id, policy, labels, pin, added_at FROM agents WHERE agent_id = ?",
                (agent_id,),
            ).fetchone()
        return None if row is None else AgentRecord(row[0], row[1], json.loads(row[2]), *row[3:])

    def agents(self, *, offset: int = 0, limit: int = 100) -> list[AgentRecord]:
        with self._errors():
            rows = self._db.execute(
                "SELECT agent_id, policy, labels, pin, added_at FROM agents"
                " ORDER BY agent_id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
        return [AgentRecord(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    def agent_count(self) -> int:
        with self._errors():
            return int(self._db.execute("SELECT COUNT(*) FROM agents").fetchone()[0])

    def agent_policies(self) -> tuple[NDArray[np.uint32], NDArray[np.uint16], tuple[str, ...]]:
        """Every agent id (ascending), the index of its policy, and the policy names."""
        with self._errors():
            names = tuple(
                r[0] for r in self._db.execute("SELECT DISTINCT policy FROM agents ORDER BY policy")
            )
            index = {name: n for n, name in enumerate(names)}
            rows = self._db.execute("SELECT agent_id, policy FROM agents ORDER BY agent_id")
            pairs = rows.fetchall()
        ids = np.fromiter((r[0] for r in pairs), dtype=np.uint32, count=len(pairs))
        policy = np.fromiter((index[r[1]] for r in pairs), dtype=np.uint16, count=len(pairs))
        return ids, policy, names

    def oldest_checkpoint(self) -> float | None:
        """When the least recent checkpoint of a swarm agent was taken (None: none yet)."""
        return self.checkpoints.oldest(self.agent_ids())

    # --- edges --------------------------------------------------------------

    def edges(self) -> dict[str, KnownEdge]:
        with self._errors():
            rows = self._db.execute(
                "SELECT edge_id, weight, drained, first_seen FROM edges ORDER BY edge_id"
            ).fetchall()
        return {r[0]: KnownEdge(r[0], r[1], bool(r[2]), r[3]) for r in rows}

    def remember_edge(self, edge_id: str, weight: float = 1.0) -> None:
        """Record an edge the first time it connects (no change if known)."""
        now = time.time()
        with self._errors():
            self._db.execute(
                "INSERT OR IGNORE INTO edges VALUES (?, ?, 0, ?, ?)", (edge_id, weight, now, now)
            )

    def set_drained(self, edge_id: str, drained: bool) -> bool:
        """Mark ``edge_id`` drained or not; False if the edge was never seen."""
        with self._errors():
            cursor = self._db.execute(
                "UPDATE edges SET drained = ?, updated_at = ? WHERE edge_id = ?",
                (int(drained), time.time(), edge_id),
            )
        return cursor.rowcount > 0

    def set_weight(self, edge_id: str, weight: float) -> bool:
        """Set ``edge_id``'s capacity weight; False if the edge was never seen."""
        if not 0 < weight <= 1000:
            raise AgentStoreError(f"a weight lies in (0, 1000], got {weight}")
        with self._errors():
            cursor = self._db.execute(
                "UPDATE edges SET weight = ?, updated_at = ? WHERE edge_id = ?",
                (float(weight), time.time(), edge_id),
            )
        return cursor.rowcount > 0

    # --- epoch --------------------------------------------------------------

    def epoch(self) -> int:
        with self._errors():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
        return 0 if row is None else int(row[0])

    def set_epoch(self, epoch: int) -> None:
        with self._errors():
            self._db.execute(
                "INSERT INTO meta VALUES ('epoch', ?) ON CONFLICT(key) DO UPDATE SET value = ?",
                (epoch, epoch),
            )
