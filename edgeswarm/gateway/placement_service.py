"""The gateway's placement service: members, the assignment, and the admin operations.

Members are the edges of ``placement.db`` (remembered when they first connect)
with their weights and drain marks; an edge whose session has been gone for
``--edge-timeout`` is DOWN (a short reconnect moves nothing). Liveness is the
session itself (QUIC keeps it alive with its own pings; a dead edge's session
ends by idle timeout), so membership is configuration plus heartbeats, no
consensus. Every change of the members bumps the placement epoch (kept in
``placement.db``), and the assignment of every swarm agent is recomputed by
:func:`edgeswarm.placement.assign` (vectorised; cached per epoch and agent set).

Operations (PLACEMENT_REQUEST ``op``; docs/protocol.md section 13)::

    agents.add    first_id, count, policy, [labels], [pin]   add swarm agents
    agents.list   [offset], [limit]                           agents with their owner
    agents.show   agent_id                                    one agent, owner, checkpoint
    edges.list                                                edges, state, weight, agents
    edges.drain   edge_id                                     move its unpinned agents away
    edges.undrain edge_id                                     take agents again
    edges.weight  edge_id, weight                             capacity (2: twice the agents)
    shards                                                    owners, imbalance, planned moves

A request that cannot be done gets ``ok = false`` and a one-line ``message``;
nothing is changed then.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import numpy as np

from edgeswarm.placement import (
    DEFAULT_PLACER,
    Assignment,
    Membership,
    MemberState,
    MovePlan,
    PlacementError,
    assign,
    plan_moves,
)
from edgeswarm.placement.membership import Member
from edgeswarm.placement.ring import PLACERS
from edgeswarm.wire import PlacementReply, PlacementRequest

from .agent_store import AgentStore, AgentStoreError
from .placement_metrics import PlacementMetrics

__all__ = ["PLACEMENT_OPS", "PlacementService"]

logger = logging.getLogger("edgeswarm.gateway.placement")

MAX_LIST = 10_000
"""Most agents one ``agents.list`` answer carries."""
MAX_LABELS = 64
"""Most labels of one agent (a map on the wire has at most 256 keys)."""


class PlacementService:
    """Placement of the swarm's agents on this gateway's edges."""

    def __init__(
        self,
        store: AgentStore,
        live_edges: Callable[[], frozenset[str]],
        *,
        placer: str = DEFAULT_PLACER,
        edge_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        metrics: PlacementMetrics | None = None,
    ) -> None:
        if placer not in PLACERS:
            raise ValueError(f"unknown placer {placer!r}; known: {', '.join(PLACERS)}")
        self.store = store
        self._live_edges = live_edges
        self._edge_timeout_s = edge_timeout_s
        self._clock = clock
        self._gone_since: dict[str, float] = {}
        self._placer = placer
        self._membership = Membership(epoch=store.epoch())
        self._previous: Assignment | None = None
        self._assignment: Assignment | None = None
        self._cached_for: tuple[int, int] = (-1, -1)
        self._last_plan: MovePlan | None = None
        self._ids = np.empty(0, dtype=np.uint32)
        self._pins: dict[int, str] = {}
        self._agents_version = -1
        self.metrics = metrics
        self.on_assignment: Callable[[Assignment], None] | None = None
        """Called with every new assignment (``placement_edges.py`` sends ASSIGN)."""
        self.holders: Callable[[], dict[str, int]] | None = None
        """Agents each connected edge holds now (``placement_edges.py``), for ``shards``."""

    # --- membership and assignment -----------------------------------------

    def edge_connected(self, edge_id: str) -> None:
        """An edge authenticated: remember it (the membership changes on the next refresh)."""
        self.store.remember_edge(edge_id)
        self.refresh()

    def membership(self) -> Membership:
        """The members now, the epoch bumped if they changed since the last call."""
        live = self._live_edges()
        now = self._clock()
        members = {}
        for edge in self.store.edges().values():
            if edge.edge_id in live:
                self._gone_since.pop(edge.edge_id, None)
                gone = 0.0
            else:  # counted from the first refresh that finds it gone
                gone = now - self._gone_since.setdefault(edge.edge_id, now)
            known = self._membership.members.get(edge.edge_id)
            down = edge.edge_id not in live and (
                gone >= self._edge_timeout_s
                or (known is not None and known.state is MemberState.DOWN)
            )
            state = (
                MemberState.DOWN
                if down
                else MemberState.DRAINING
                if edge.drained
                else MemberState.ACTIVE
            )
            members[edge.edge_id] = Member(edge.edge_id, edge.weight, state)
        if members != dict(self._membership.members):
            epoch = self._membership.epoch + 1
            self.store.set_epoch(epoch)
            self._membership = Membership(members=dict(sorted(members.items())), epoch=epoch)
            logger.info(
                "placement epoch",
                extra={
                    "epoch": epoch,
                    "members": {m.name: m.state.value for m in members.values()},
                },
            )
        return self._membership

    def refresh(self) -> Assignment:
        """The assignment for the current members and agents (recomputed when either changed)."""
        membership = self.membership()
        key = (membership.epoch, self.store.version)
        if self._assignment is None or key != self._cached_for:
            if self._agents_version != self.store.version:
                self._ids, self._pins = self.store.agent_ids(), self.store.pins()
                self._agents_version = self.store.version
            new = assign(self._ids, membership, pins=self._pins, placer=self._placer)
            if self._assignment is not None:
                self._last_plan = plan_moves(self._assignment, new, membership)
            self._previous, self._assignment, self._cached_for = self._assignment, new, key
            if self.metrics is not None:
                self.metrics.observe(new, self._last_plan)
            if self.on_assignment is not None:
                self.on_assignment(new)
        return self._assignment

    def next_round(self) -> Assignment:
        """The same assignment at a new epoch, for the next round of a bounded move
        (``placement_edges.py``): an edge that gives agents away again gets a fresh
        epoch, so its CHECKPOINT of the older one cannot be read as their hand-back."""
        current = self._assignment if self._assignment is not None else self.refresh()
        epoch = self._membership.epoch + 1
        self.store.set_epoch(epoch)
        self._membership = Membership(members=self._membership.members, epoch=epoch)
        self._assignment = dataclasses.replace(current, epoch=epoch)
        self._cached_for = (epoch, self._cached_for[1])
        if self.metrics is not None:
            self.metrics.epoch.set(epoch)
        return self._assignment

    # --- operations ---------------------------------------------------------

    def answer(self, request: PlacementRequest) -> PlacementReply:
        """The PLACEMENT answer to one admin request (never raises for a bad request)."""
        handler = _OPS.get(request.op)
        if handler is None:
            known = ", ".join(sorted(_OPS))
            return self._refused(request, f"unknown op {request.op!r}; known: {known}")
        try:
            result = handler(self, request.args)
        except (PlacementError, AgentStoreError, ValueError, TypeError, KeyError) as exc:
            return self._refused(request, str(exc).strip("'\""))
        return PlacementReply(request_id=request.request_id, ok=True, result=result)

    def _refused(self, request: PlacementRequest, message: str) -> PlacementReply:
        logger.warning("placement request refused", extra={"op": request.op, "error": message})
        return PlacementReply(request_id=request.request_id, ok=False, message=message)

    def _agents_add(self, args: dict[str, Any]) -> dict[str, Any]:
        labels = args.get("labels") or {}
        if not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            raise ValueError("labels must map strings to strings")
        if len(labels) > MAX_LABELS or any(len(k) > 128 or len(v) > 128 for k, v in labels.items()):
            raise ValueError(f"at most {MAX_LABELS} labels of at most 128 characters each")
        pin = args.get("pin")
        if pin is not None and not isinstance(pin, str):
            raise ValueError("pin must be an edge id")
        added = self.store.add_agents(
            _int(args, "first_id"),
            _int(args, "count"),
            policy=str(args.get("policy", "")),
            labels=labels,
            pin=pin,
        )
        assignment = self.refresh()
        return {"added": added, "agents": int(assignment.ids.size), "epoch": assignment.epoch}

    def _agents_list(self, args: dict[str, Any]) -> dict[str, Any]:
        offset = _int(args, "offset", 0)
        limit = min(_int(args, "limit", 100), MAX_LIST)
        assignment = self.refresh()
        records = self.store.agents(offset=offset, limit=limit)
        saved = (
            dict(self.store.checkpoints.between(records[0].agent_id, records[-1].agent_id))
            if records
            else {}
        )
        rows = [
            {
                **asdict(record),
                "owner": assignment.owner_of(record.agent_id),
                "checkpoint": saved.get(record.agent_id),
            }
            for record in records
        ]
        return {"total": self.store.agent_count(), "offset": offset, "agents": rows}

    def _agents_show(self, args: dict[str, Any]) -> dict[str, Any]:
        agent_id = _int(args, "agent_id")
        record = self.store.agent(agent_id)
        if record is None:
            raise ValueError(f"no agent {agent_id}; `edgeswarm agents list` shows them")
        assignment = self.refresh()
        return {
            **asdict(record),
            "owner": assignment.owner_of(agent_id),
            "epoch": assignment.epoch,
            "checkpoint": self.store.checkpoints.one(agent_id),
        }

    def _edges_list(self, args: dict[str, Any]) -> dict[str, Any]:
        assignment = self.refresh()
        counts = assignment.counts()
        membership = self._membership
        return {
            "epoch": membership.epoch,
            "edges": [
                {
                    "edge_id": member.name,
                    "state": member.state.value,
                    "weight": member.weight,
                    "agents": counts.get(member.name, 0),
                }
                for member in membership.members.values()
            ],
        }

    def _drain(self, args: dict[str, Any], drained: bool) -> dict[str, Any]:
        edge_id = args.get("edge_id")
        if not isinstance(edge_id, str) or not self.store.set_drained(edge_id, drained):
            raise ValueError(self._never_seen(edge_id))
        return {"edge_id": edge_id, "drained": drained, **self._moved()}

    def _weight(self, args: dict[str, Any]) -> dict[str, Any]:
        edge_id, weight = args.get("edge_id"), args.get("weight")
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            raise ValueError("weight must be a number")
        if not isinstance(edge_id, str) or not self.store.set_weight(edge_id, float(weight)):
            raise ValueError(self._never_seen(edge_id))
        return {"edge_id": edge_id, "weight": float(weight), **self._moved()}

    def _never_seen(self, edge_id: object) -> str:
        known = ", ".join(self.store.edges()) or "none yet"
        return f"edge {edge_id!r} has never connected; known edges: {known}"

    def _moved(self) -> dict[str, int]:
        """The new epoch and the agents its move plan moves (after a change of the members)."""
        assignment = self.refresh()
        plan = self._last_plan
        moving = plan.agents if plan is not None and plan.to_epoch == assignment.epoch else 0
        return {"epoch": assignment.epoch, "moves": moving}

    def _shards(self, args: dict[str, Any]) -> dict[str, Any]:
        assignment = self.refresh()
        counts = assignment.counts()
        placed = [n for n, m in self._membership.members.items() if m.state is MemberState.ACTIVE]
        loads = np.array([counts[n] for n in placed], dtype=np.float64)
        plan = self._last_plan
        held = self.holders() if self.holders is not None else {}
        return {
            "epoch": assignment.epoch,
            "placer": self._placer,
            "held": [{"edge_id": e, "agents": n} for e, n in sorted(held.items())],
            # assigned to a connected placement edge that does not hold them yet
            "moving": sum(max(0, counts.get(e, 0) - n) for e, n in held.items()),
            "agents": int(assignment.ids.size),
            "unowned": int((assignment.owners < 0).sum()),
            "per_edge": [{"edge_id": e, "agents": n} for e, n in counts.items()],
            "imbalance": float(loads.max() / loads.mean()) if loads.size and loads.mean() else 0.0,
            "last_plan": None
            if plan is None
            else {
                "from_epoch": plan.from_epoch,
                "to_epoch": plan.to_epoch,
                "agents": plan.agents,
                "batches": [
                    {
                        "kind": b.kind.value,
                        "source": b.source,
                        "target": b.target,
                        "agents": int(b.ids.size),
                    }
                    for b in plan.batches[:50]
                ],
            },
        }


def _int(args: dict[str, Any], key: str, default: int | None = None) -> int:
    value = args.get(key, default)
    if type(value) is not int or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    return value


_OPS: dict[str, Callable[[PlacementService, dict[str, Any]], dict[str, Any]]] = {
    "agents.add": PlacementService._agents_add,
    "agents.list": PlacementService._agents_list,
    "agents.show": PlacementService._agents_show,
    "edges.list": PlacementService._edges_list,
    "edges.drain": lambda service, args: service._drain(args, True),
    "edges.undrain": lambda service, args: service._drain(args, False),
    "edges.weight": PlacementService._weight,
    "shards": PlacementService._shards,
}

PLACEMENT_OPS = frozenset(_OPS)
"""Every ``op`` a PLACEMENT_REQUEST may name."""
