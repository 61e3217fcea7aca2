"""The gateway's side of placement with its edges: ASSIGN out, CHECKPOINT in.

Every edge session that negotiated feature ``placement`` is attached here once
WELCOME is sent. Whenever the assignment changes (a new epoch: an edge joined,
left, was drained, timed out; agents were added) each attached edge whose set
of agents changed gets ASSIGN frames naming its complete set, in parts of at
most ``max_batch_agents`` rows; agents new to it carry their last checkpoint
(ticks and state rows from ``checkpoints.db``), so a killed edge's agents resume
on their new owner from there. An edge that connects gets its set at once.

Live moves are bounded: at most ``max_moves`` agents (``--max-moves``) are on their
way back from the edges giving them away at any time; an edge keeps stepping the rest
of the agents it is to give away until rows come back, then the next round drops the
next share, at a new epoch (:meth:`PlacementService.next_round`). Agents that run
nowhere (a gone edge's, once its lease has run out; new ones) are not held back.

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
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edgeswarm.placement import Assignment
from edgeswarm.placement.moves import DEFAULT_MAX_MOVES
from edgeswarm.wire import (
    DEFAULT_MAX_BATCH_AGENTS,
    Assign,
    Checkpoint,
    Error,
    ErrorCode,
    Frame,
    Session,
)

from .agent_ids import consecutive_rows, dense_table, holds_run, rows_of
from .agent_store import AgentStore, AgentStoreError
from .placement_metrics import CheckpointFileCollector

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
        self.handover = Histogram(
            "edgeswarm_placement_handover_seconds",
            "From an ASSIGN that took agents from an edge to the edge giving their rows back",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.moving = Gauge(
            "edgeswarm_placement_moving_agents",
            "Agents given away by an edge whose rows have not come back yet (at most --max-moves)",
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
        registry.register(CheckpointFileCollector(store.checkpoints))


_NONE = np.empty(0, dtype=np.uint32)


@dataclass
class _Edge:
    send: Callable[[Frame], None]
    max_rows: int
    sent: NDArray[np.uint32] | None = None
    """The set the edge was last told to run (None: nothing yet in this session)."""
    sent_epoch: int = -1
    """Epoch of the last ASSIGN sent to it."""
    releasing: NDArray[np.uint32] = field(default_factory=lambda: _NONE)
    """Agents it was told to drop whose rows have not come back yet."""
    released_at: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    """Per ``releasing`` agent: the epoch of the ASSIGN that dropped it."""
    dropped_at: dict[int, float] = field(default_factory=dict)
    """Epoch of an ASSIGN that dropped agents -> when it was sent (monotonic)."""

    stale: NDArray[np.uint32] = field(default_factory=lambda: _NONE)
    """Agents another edge ran while this one was away, whose old rows its table still
    holds: left out of its sets until it applied ``stale_epoch``'s (it drops them)."""
    stale_epoch: int = -1

    def holds(self) -> NDArray[np.uint32]:
        """Sorted: the agents sent (and not given back yet)."""
        held = self.sent if self.sent is not None else _NONE
        return np.union1d(held, self.releasing) if self.releasing.size else held


class PlacementEdges:
    """Attached edges, what each holds, the hand-over of moving agents, checkpoints.

    Hand-over (no agent on two edges, no tick stepped twice on a live move): an
    agent assigned to edge T while another attached edge S still holds it (S was
    sent it and has not given its rows back) is withheld from T. S's next ASSIGN
    leaves it out; S drops its row at its next tick boundary and sends the row
    back (a CHECKPOINT at that epoch); stored, it goes to T with that exact tick
    and state. An edge whose session ends holds nothing any more: its agents go
    to their next owners from their last checkpoints (rule 4, the staleness bound),
    ``lease_ticks`` past their last logged tick, and not before its lease (``lease_s``)
    has run out: until then it may still step them (``placement/lease.py``).
    """

    def __init__(
        self,
        store: AgentStore,
        current: Callable[[], Assignment],
        *,
        metrics: AssignMetrics | None = None,
        lease_ticks: int = 0,
        lease_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        max_moves: int = DEFAULT_MAX_MOVES,
        next_round: Callable[[], Assignment] | None = None,
    ) -> None:
        if max_moves < 1:
            raise ValueError(f"--max-moves must be at least 1, got {max_moves}")
        self._store = store
        self._max_moves = max_moves
        self._next_round = next_round
        """A new epoch for the same assignment (``PlacementService.next_round``); without
        it (tests of one round) moves are not bounded."""
        self._lease_ticks = lease_ticks
        """Ticks an edge may step past the last tick logged for an agent (its lease)."""
        self._lease_s = lease_s
        self._clock = clock
        self._vanished: dict[str, tuple[NDArray[np.uint32], float]] = {}
        """Edge whose session ended -> the agents it held and when its lease has surely
        run out: till then they go to no other edge (it may still step them)."""
        self._current = current
        self._edges: dict[str, _Edge] = {}
        self.metrics = metrics
        if metrics is not None:
            metrics.moving.set_function(self.moving)
        self._policies: tuple[int, NDArray[np.uint32], NDArray[np.uint16], tuple[str, ...]] = (
            -1,
            np.empty(0, np.uint32),
            np.empty(0, np.uint16),
            (),
        )
        self._dense: NDArray[np.int32] | None = None
        """Agent id -> its place among every swarm agent (-1: none), when the ids are
        dense enough: ``observed`` runs for every batch (a gather instead of a search)."""
        self._logged = np.zeros(0, dtype=np.uint64)
        """Per swarm agent (the order of ``_policies``' ids): the highest tick an edge's
        observations were received at (rule 4 of ``placement/handover.py``: an agent that
        resumes from a checkpoint never steps a tick already in the log). In memory: after
        a gateway restart the checkpoints' ticks are the bound."""
        self._unsure = np.zeros(0, dtype=np.bool_)
        """Per swarm agent: held by an edge whose session ended while it held it. That
        edge may have stepped it up to ``lease_ticks`` past the last tick logged (and
        may deliver those ticks after a partition heals): its next row skips them."""
        self._left: dict[str, tuple[NDArray[np.uint32], NDArray[np.uint32]]] = {}
        """Edge whose session ended -> (the agents it held then, those of them another
        edge has run since). Its table still holds its rows of them when it comes back
        (an edge keeps its own rows): those that ran elsewhere are stale there."""

    def attach(self, edge_id: str, send: Callable[[Frame], None], *, max_rows: int) -> None:
        """An edge's session speaks placement: send it its agents now."""
        edge = self._edges[edge_id] = _Edge(send, max(1, max_rows))
        self._vanished.pop(edge_id, None)  # the edge itself is back: it holds what it gets
        _, stale = self._left.pop(edge_id, (_NONE, _NONE))
        assignment = self._current()
        if stale.size:  # its table's rows of them are behind: it drops them first (a
            # hand-over from itself) and takes them back from here, at a fresh epoch
            if self._next_round is not None:
                assignment = self._next_round()
            edge.stale, edge.stale_epoch = stale, assignment.epoch
            logger.info(
                "rows an edge kept of agents run elsewhere meanwhile are replaced",
                extra={"edge_id": edge_id, "agents": int(stale.size)},
            )
        self._push_to(edge_id, assignment)

    def session(
        self, edge_id: str, session: Session, flush: Callable[[], None]
    ) -> PlacementSession:
        """Attach a READY edge session that negotiated feature ``placement``."""
        return PlacementSession(self, edge_id, session, flush)

    def detach(self, edge_id: str, send: Callable[[Frame], None]) -> None:
        """The edge's session ended: what it held is free (from checkpoints) for others."""
        edge = self._edges.get(edge_id)
        if edge is not None and edge.send == send:
            del self._edges[edge_id]
            all_ids, held = self._agents(), edge.holds()
            at = np.searchsorted(all_ids, held)
            known = at < all_ids.shape[0]
            known[known] = all_ids[at[known]] == held[known]
            self._unsure[at[known]] = True
            self._left[edge_id] = (held, _NONE)
            if self._lease_s > 0:
                self._vanished[edge_id] = (held, self._clock() + self._lease_s)
            self.assignment_changed(self._current())

    def assignment_changed(self, assignment: Assignment) -> None:
        """A new assignment (or agents freed): every attached edge whose set changed gets
        ASSIGN; edges giving agents away first."""
        for edge_id in sorted(self._edges, key=lambda e: self._gains(e, assignment)):
            assignment = self._push_to(edge_id, assignment)

    def leases_ended(self) -> None:
        """Time passed: agents of vanished edges whose lease ran out go to their owners
        (the gateway calls this a lease after a session ends)."""
        self._prune_vanished()
        self.assignment_changed(self._current())

    def _prune_vanished(self) -> None:
        now = self._clock()
        self._vanished = {name: v for name, v in self._vanished.items() if v[1] > now}

    def holders(self) -> dict[str, int]:
        """Agents each attached edge holds (sent, or releasing)."""
        return {edge_id: int(edge.holds().size) for edge_id, edge in self._edges.items()}

    # --- ASSIGN ----------------------------------------------------------------

    def _owned(self, edge_id: str, assignment: Assignment) -> NDArray[np.uint32]:
        return assignment.ids_of(edge_id) if edge_id in assignment.nodes else _NONE

    def _gains(self, edge_id: str, assignment: Assignment) -> int:
        sent = self._edges[edge_id].sent
        owned = self._owned(edge_id, assignment)
        return int(owned.size) - (int(sent.size) if sent is not None else 0)

    def _busy_for(self, edge_id: str) -> NDArray[np.uint32]:
        """Agents held elsewhere, or on their way back from anywhere."""
        parts = [
            e.holds() if name != edge_id else np.union1d(e.releasing, e.stale)
            for name, e in self._edges.items()
        ]
        self._prune_vanished()
        parts += [held for name, (held, _) in self._vanished.items() if name != edge_id]
        return np.unique(np.concatenate(parts)) if parts else _NONE

    def moving(self) -> int:
        """Agents given away by edges whose rows have not come back yet."""
        return sum(int(edge.releasing.size) for edge in self._edges.values())

    def _bounded(self, edge: _Edge, ids: NDArray[np.uint32]) -> NDArray[np.uint32]:
        """``ids`` plus the agents the edge holds and is to give away beyond the room
        left under ``max_moves``: it keeps stepping those until a later round."""
        if self._next_round is None or edge.sent is None:
            return ids
        leaving = edge.sent[~np.isin(edge.sent, ids, assume_unique=True)]
        room = max(0, self._max_moves - self.moving())
        if leaving.size <= room:
            return ids
        return np.union1d(ids, leaving[room:])

    def _push_to(self, edge_id: str, assignment: Assignment) -> Assignment:
        """Send ``edge_id`` its set if it changed; the assignment to go on with (a new
        round's when this ASSIGN gives agents away again at an epoch it already had)."""
        edge = self._edges[edge_id]
        owned = self._owned(edge_id, assignment)
        ids = owned[~np.isin(owned, self._busy_for(edge_id), assume_unique=True)]
        ids = self._bounded(edge, ids)
        if edge.sent is not None and np.array_equal(edge.sent, ids):
            return assignment
        leaving = None if edge.sent is None else ~np.isin(edge.sent, ids, assume_unique=True)
        gives = leaving is not None and bool(leaving.any())
        if gives and edge.sent_epoch >= assignment.epoch and self._next_round is not None:
            assignment = self._next_round()
        policy, names = self._policies_of(ids)
        new = np.ones(ids.shape[0], dtype=np.bool_)
        self._ran_elsewhere(edge_id, ids)
        if edge.sent is not None:
            new = ~np.isin(ids, edge.sent, assume_unique=True)
            dropped = edge.sent[leaving]
            keep = ~np.isin(edge.releasing, dropped)
            if dropped.size:
                edge.dropped_at.setdefault(assignment.epoch, time.monotonic())
            edge.releasing = np.concatenate([edge.releasing[keep], dropped])
            edge.released_at = np.concatenate(
                [edge.released_at[keep], np.full(dropped.shape[0], assignment.epoch, np.int64)]
            )
        # every row from its checkpoint, going on after the last tick logged for it (rule
        # 4: no tick twice). The edge keeps its own rows of agents it runs already; the
        # others take these, also those of an earlier ASSIGN it had not applied yet
        # (it applies only the newest): so every row is sent, not only the new ones
        ticks, state, _ = self._store.checkpoints.rows(ids, STATE_DIM)
        ticks = np.maximum(ticks, self.logged_ticks(ids))
        at = np.searchsorted(self._agents(), ids)
        unsure = self._unsure[at]  # their last edge may have stepped past: skip its lease
        ticks[unsure] += np.uint64(self._lease_ticks)
        self._unsure[at] = False
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
        edge.sent, edge.sent_epoch = ids, assignment.epoch
        logger.info(
            "agents assigned",
            extra={
                "edge_id": edge_id,
                "epoch": assignment.epoch,
                "agents": int(ids.shape[0]),
                "new": int(new.sum()),
                "withheld": int((~np.isin(owned, ids, assume_unique=True)).sum()),
                "kept": int((~np.isin(ids, owned, assume_unique=True)).sum()),
                "parts": parts,
                "moving": self.moving(),
            },
        )
        return assignment

    def _ran_elsewhere(self, edge_id: str, ids: NDArray[np.uint32]) -> None:
        """``ids`` go to ``edge_id``: a gone edge that held some of them holds stale rows."""
        for name, (held, stale) in self._left.items():
            if name != edge_id and stale.size < held.size:  # (all stale: nothing to learn)
                taken = np.intersect1d(held, ids, assume_unique=True)
                if taken.size:
                    self._left[name] = (held, np.union1d(stale, taken))

    def _agents(self) -> NDArray[np.uint32]:
        """Every swarm agent id (cached per change of the agent set)."""
        version, all_ids, policy, names = self._policies
        if version != self._store.version:
            old_ids, old_logged, old_unsure = all_ids, self._logged, self._unsure
            all_ids, policy, names = self._store.agent_policies()
            self._policies = (self._store.version, all_ids, policy, names)
            self._logged = np.zeros(all_ids.shape[0], dtype=np.uint64)
            self._logged[np.searchsorted(all_ids, old_ids)] = old_logged  # agents stay
            self._unsure = np.zeros(all_ids.shape[0], dtype=np.bool_)
            self._unsure[np.searchsorted(all_ids, old_ids)] = old_unsure
            self._dense = dense_table(all_ids)
        return all_ids

    def observed(self, agent_ids: NDArray[np.uint32], tick: int) -> None:
        """An edge's observations of ``agent_ids`` at ``tick`` reached the log."""
        all_ids, dense = self._agents(), self._dense
        if (run := consecutive_rows(agent_ids, dense)) is not None:  # the common case
            logged = self._logged[run]
            np.maximum(logged, np.uint64(tick), out=logged)
            return
        at = rows_of(agent_ids, all_ids, dense)
        self._logged[at] = np.maximum(self._logged[at], np.uint64(tick))

    def logged_ticks(self, ids: NDArray[np.uint32]) -> NDArray[np.uint64]:
        """The highest tick logged for each of ``ids`` (0: none seen)."""
        all_ids = self._agents()
        at = np.searchsorted(all_ids, ids)
        return self._logged[at] if ids.size else np.zeros(0, dtype=np.uint64)

    def _policies_of(self, ids: NDArray[np.uint32]) -> tuple[NDArray[np.uint16], tuple[str, ...]]:
        self._agents()
        _, all_ids, policy, names = self._policies
        at = np.searchsorted(all_ids, ids)
        return (policy[at] if ids.size else np.empty(0, np.uint16)), names

    # --- CHECKPOINT ------------------------------------------------------------

    def checkpoint(self, edge_id: str, frame: Checkpoint) -> Error | None:
        """Store the rows of agents ``edge_id`` holds; rows it gives back (of the epoch
        that dropped them) end their hand-over. An ERROR for the session if some rows
        were of agents it does not hold (those are not stored)."""
        edge = self._edges.get(edge_id)
        held = _NONE if edge is None else edge.holds()
        if edge is not None and edge.stale.size:
            held = np.union1d(held, edge.stale)
        ids, ticks, state = frame.agent_ids, frame.ticks, frame.state
        refused = 0
        if not holds_run(held, ids):  # the common frame: a run of agents all held
            at = np.minimum(np.searchsorted(held, ids), max(0, held.size - 1))
            mine = held[at] == ids if held.size else np.zeros(frame.count, np.bool_)
            refused = int(frame.count - mine.sum())
            ids, ticks, state = ids[mine], ticks[mine], state[mine]
        try:
            written = self._store.checkpoints.save(edge_id, ids, ticks, state)
        except AgentStoreError as exc:
            logger.error("checkpoint not stored", extra={"edge_id": edge_id, "error": str(exc)})
            return Error(
                code=ErrorCode.INTERNAL_ERROR, message="the gateway cannot store checkpoints now"
            )
        if self.metrics is not None:
            self.metrics.checkpoint_rows.inc(written)
            self.metrics.refused_rows.inc(refused)
        if edge is not None and edge.stale.size and frame.epoch >= edge.stale_epoch:
            edge.stale = _NONE  # it dropped its old rows of them: they may come back now
            self.assignment_changed(self._current())
        if edge is not None and edge.releasing.size:
            # a CHECKPOINT of epoch E says the edge applied E (or a later set): it holds
            # none of the agents dropped at E or before, whether it ever held them (it
            # applies only its newest ASSIGN) or their rows are in this frame
            back = edge.released_at <= frame.epoch
            for epoch in [e for e in edge.dropped_at if e <= frame.epoch]:
                took = time.monotonic() - edge.dropped_at.pop(epoch)
                if self.metrics is not None:
                    self.metrics.handover.observe(took)
            if back.any():
                edge.releasing, edge.released_at = edge.releasing[~back], edge.released_at[~back]
                self.assignment_changed(self._current())  # withheld agents go on now
        if not refused:
            return None
        logger.warning(
            "checkpoint rows of agents the edge does not hold refused",
            extra={"edge_id": edge_id, "refused": refused, "epoch": frame.epoch},
        )
        return Error(
            code=ErrorCode.NOT_OWNER,
            message=f"{refused} checkpoint rows are of agents this edge does not hold; not stored",
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

    def observed(self, tick: int, agent_ids: NDArray[np.uint32] | None) -> None:
        """An OBS_BATCH of this edge at ``tick`` with ``agent_ids`` (as the session decoded
        them) was accepted: its ``(agent, tick)`` record."""
        assert agent_ids is not None  # the session sets them for every OBS_BATCH
        self._edges.observed(agent_ids, tick)

    def checkpoint(self, frame: Checkpoint) -> None:
        error = self._edges.checkpoint(self.edge_id, frame)
        if error is not None:
            self.send(error)

    def ended(self) -> None:
        self._edges.detach(self.edge_id, self.send)
