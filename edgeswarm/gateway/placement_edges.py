"""The gateway's side of placement with its edges: ASSIGN out, CHECKPOINT in.

Every edge session that negotiated feature ``placement`` is attached here once
WELCOME is sent. Whenever the assignment changes (a new epoch: an edge joined,
left, was drained, timed out; agents were added) each attached edge whose set
of agents changed gets ASSIGN frames naming its complete set, in parts of at
most ``max_batch_agents`` rows; agents new to it carry their last checkpoint
(ticks and state rows from ``placement.db``), so a killed edge's agents resume
on their new owner from there. An edge that connects gets its set at once.

CHECKPOINT rows are stored only for agents the sending edge owns under the
current assignment (a peer writes only what it owns); the rest are refused
with ERROR ``NOT_OWNER``, logged and counted, and the session goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeswarm.placement import Assignment
from edgeswarm.wire import (
    DEFAULT_MAX_BATCH_AGENTS,
    Assign,
    Checkpoint,
    Error,
    ErrorCode,
    Frame,
    Session,
)

from .agent_store import AgentStore, AgentStoreError

__all__ = ["AssignMetrics", "PlacementEdges", "PlacementSession"]

logger = logging.getLogger("edgeswarm.gateway.placement")

STATE_DIM = 2
"""Width of the state rows an ASSIGN carries (the edge's agent table's)."""


class AssignMetrics:
    """Metrics of ASSIGN and CHECKPOINT traffic."""

    def __init__(self, registry: CollectorRegistry, store: AgentStore) -> None:
        self.assigned = Counter(
            "edgeswarm_placement_assign_frames",
            "ASSIGN frames sent to edges",
            registry=registry,
        )
        self.checkpoint_rows = Counter(
            "edgeswarm_placement_checkpoint_rows",
            "Agent state rows stored from CHECKPOINT frames",
            registry=registry,
        )
        self.refused_rows = Counter(
            "edgeswarm_placement_checkpoint_refused_rows",
            "CHECKPOINT rows refused (agents the edge does not own)",
            registry=registry,
        )
        self.age = Gauge(
            "edgeswarm_placement_checkpoint_age_seconds",
            "Age of the least recent checkpoint of a swarm agent (0: none yet)",
            registry=registry,
        )

        def oldest_age() -> float:
            try:
                oldest = store.oldest_checkpoint()
            except AgentStoreError:
                return float("nan")
            return 0.0 if oldest is None else max(0.0, time.time() - oldest)

        self.age.set_function(oldest_age)


@dataclass
class _Edge:
    send: Callable[[Frame], None]
    max_rows: int
    sent: NDArray[np.uint32] | None = None
    """The set last assigned to it (None: none yet in this session)."""
    epoch: int = -1
    checkpoints: int = field(default=0)


class PlacementEdges:
    """Attached edges, what each was assigned, and their checkpoints."""

    def __init__(
        self,
        store: AgentStore,
        current: Callable[[], Assignment],
        *,
        metrics: AssignMetrics | None = None,
    ) -> None:
        self._store = store
        self._current = current
        self._edges: dict[str, _Edge] = {}
        self.metrics = metrics
        self._policies: tuple[int, NDArray[np.uint32], NDArray[np.uint16], tuple[str, ...]] = (
            -1,
            np.empty(0, np.uint32),
            np.empty(0, np.uint16),
            (),
        )

    def attach(self, edge_id: str, send: Callable[[Frame], None], *, max_rows: int) -> None:
        """An edge's session speaks placement: send it its agents now."""
        self._edges[edge_id] = _Edge(send, max(1, max_rows))
        self._push_to(edge_id, self._current())

    def session(
        self, edge_id: str, session: Session, flush: Callable[[], None]
    ) -> PlacementSession:
        """Attach a READY edge session that negotiated feature ``placement``."""
        return PlacementSession(self, edge_id, session, flush)

    def detach(self, edge_id: str, send: Callable[[Frame], None]) -> None:
        edge = self._edges.get(edge_id)
        if edge is not None and edge.send == send:
            del self._edges[edge_id]

    def assignment_changed(self, assignment: Assignment) -> None:
        """A new assignment: every attached edge whose set changed gets ASSIGN."""
        for edge_id in list(self._edges):
            self._push_to(edge_id, assignment)

    # --- ASSIGN ----------------------------------------------------------------

    def _push_to(self, edge_id: str, assignment: Assignment) -> None:
        edge = self._edges[edge_id]
        ids = (
            assignment.ids_of(edge_id)
            if edge_id in assignment.nodes
            else np.empty(0, dtype=np.uint32)
        )
        if edge.sent is not None and np.array_equal(edge.sent, ids):
            return
        policy, names = self._policies_of(ids)
        new = np.ones(ids.shape[0], dtype=np.bool_)
        if edge.sent is not None:
            new = ~np.isin(ids, edge.sent, assume_unique=True)
        ticks = np.zeros(ids.shape[0], dtype=np.uint64)
        state = np.zeros((ids.shape[0], STATE_DIM), dtype=np.float32)
        # rows of agents new to the edge come from their checkpoints; the edge keeps the
        # rows of agents it already runs (it ignores what an ASSIGN says about them)
        ticks[new], state[new], _ = self._store.checkpoint_rows(ids[new], STATE_DIM)
        parts = max(1, -(-ids.shape[0] // edge.max_rows))
        for part in range(parts):
            rows = slice(part * edge.max_rows, (part + 1) * edge.max_rows)
            edge.send(
                Assign(
                    epoch=assignment.epoch,
                    part=part,
                    parts=parts,
                    agent_ids=ids[rows],
                    policy=policy[rows],
                    ticks=ticks[rows],
                    state=state[rows],
                    policy_names=names,
                )
            )
        if self.metrics is not None:
            self.metrics.assigned.inc(parts)
        edge.sent, edge.epoch = ids, assignment.epoch
        logger.info(
            "agents assigned",
            extra={
                "edge_id": edge_id,
                "epoch": assignment.epoch,
                "agents": int(ids.shape[0]),
                "new": int(new.sum()),
                "parts": parts,
            },
        )

    def _policies_of(self, ids: NDArray[np.uint32]) -> tuple[NDArray[np.uint16], tuple[str, ...]]:
        version, all_ids, policy, names = self._policies
        if version != self._store.version:
            all_ids, policy, names = self._store.agent_policies()
            self._policies = (self._store.version, all_ids, policy, names)
        at = np.searchsorted(all_ids, ids)
        return (policy[at] if ids.size else np.empty(0, np.uint16)), names

    # --- CHECKPOINT ------------------------------------------------------------

    def checkpoint(self, edge_id: str, frame: Checkpoint) -> Error | None:
        """Store the rows of agents ``edge_id`` owns; an ERROR for the session if some
        were not its (those are not stored)."""
        edge = self._edges.get(edge_id)
        assignment = self._current()
        owned = (
            assignment.ids_of(edge_id)
            if edge_id in assignment.nodes
            else np.empty(0, dtype=np.uint32)
        )
        mine = np.isin(frame.agent_ids, owned)
        refused = int(frame.count - mine.sum())
        try:
            written = self._store.save_checkpoints(
                edge_id, frame.agent_ids[mine], frame.ticks[mine], frame.state[mine]
            )
        except AgentStoreError as exc:
            logger.error("checkpoint not stored", extra={"edge_id": edge_id, "error": str(exc)})
            return Error(
                code=ErrorCode.INTERNAL_ERROR, message="the gateway cannot store checkpoints now"
            )
        if edge is not None:
            edge.checkpoints += 1
        if self.metrics is not None:
            self.metrics.checkpoint_rows.inc(written)
            self.metrics.refused_rows.inc(refused)
        if not refused:
            return None
        logger.warning(
            "checkpoint rows of agents the edge does not own refused",
            extra={"edge_id": edge_id, "refused": refused, "epoch": assignment.epoch},
        )
        return Error(
            code=ErrorCode.NOT_OWNER,
            message=f"{refused} checkpoint rows are of agents this edge does not own"
            f" at epoch {assignment.epoch}; not stored",
        )


class PlacementSession:
    """One edge session's part in placement (``GatewayConnection`` holds one when the
    session negotiated feature ``placement``): frames out through ``session``, flushed
    by ``flush`` at the end of the loop turn."""

    def __init__(
        self, edges: PlacementEdges, edge_id: str, session: Session, flush: Callable[[], None]
    ) -> None:
        self._edges, self.edge_id, self._session, self._flush = edges, edge_id, session, flush
        welcome = session.welcome
        limit = welcome.max_batch_agents if welcome is not None else DEFAULT_MAX_BATCH_AGENTS
        max_rows = min(limit, DEFAULT_MAX_BATCH_AGENTS)  # what an edge decodes by default
        edges.attach(edge_id, self.send, max_rows=max_rows)

    def send(self, frame: Frame) -> None:
        if not self._session.closed:
            self._session.send(frame)
            self._flush()

    def checkpoint(self, frame: Checkpoint) -> None:
        error = self._edges.checkpoint(self.edge_id, frame)
        if error is not None:
            self.send(error)

    def ended(self) -> None:
        self._edges.detach(self.edge_id, self.send)
