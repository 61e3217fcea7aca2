"""The hand-over table (edgeswarm.placement.handover), without sockets.

Simulated edges hold rows ``{agent: (tick, state)}`` and step every row they
hold once per edge tick, writing ``(agent, tick)`` to a log as the gateway's
durable log would. Messages between the gateway and the edges sit in queues
and are delivered in an order hypothesis picks, interleaved with edge ticks
and failures. The invariants of the module docstring are checked on the log.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from edgeswarm.placement import (
    Assignment,
    Handover,
    HandoverEvent,
    HandoverRefusedError,
    HandoverState,
    Membership,
    MemberState,
    MoveKind,
    assign,
    plan_moves,
    resume_ticks,
)
from edgeswarm.placement import handover as handover_module

E = HandoverEvent


@dataclass
class SimEdge:
    name: str
    rows: dict[int, tuple[int, int]] = field(default_factory=dict)
    inbox: deque[tuple[Any, ...]] = field(default_factory=deque)
    alive: bool = True

    def tick(self, log: list[tuple[int, int, str]]) -> None:
        """Step every held row once: tick + 1, state + 1 (the state counts steps)."""
        for agent, (tick, state) in self.rows.items():
            self.rows[agent] = (tick + 1, state + 1)
            log.append((agent, tick + 1, self.name))


@dataclass
class SimGateway:
    membership: Membership
    edges: dict[str, SimEdge]
    checkpoints: dict[int, tuple[int, int]] = field(default_factory=dict)
    inbox: deque[tuple[Any, ...]] = field(default_factory=deque)
    held: dict[int, dict[int, tuple[int, int]]] = field(default_factory=dict)
    handovers: list[Handover] = field(default_factory=list)

    def start(self, handovers: list[Handover]) -> None:
        self.handovers = handovers
        for number, h in enumerate(handovers):
            if h.batch.kind is MoveKind.HANDOVER:
                h.on(E.RELEASE_SENT, sender="gateway", epoch=h.epoch, number=number)
                self.edges[str(h.batch.source)].inbox.append(
                    ("release", h.epoch, number, h.batch.ids)
                )
            else:
                self.restore(h, number)

    def restore(self, h: Handover, number: int) -> None:
        event = E.SOURCE_DOWN if h.state is HandoverState.RELEASING else E.CHECKPOINT_LOADED
        h.on(event, sender="gateway", epoch=h.epoch, number=number)
        self.held[number] = {a: self.checkpoints[a] for a in h.batch.ids.tolist()}
        self.adopt(h, number)

    def adopt(self, h: Handover, number: int) -> None:
        h.on(E.ADOPT_SENT, sender="gateway", epoch=h.epoch, number=number)
        self.edges[str(h.batch.target)].inbox.append(
            ("adopt", h.epoch, number, self.held.pop(number))
        )

    def deliver(self) -> None:
        kind, sender, epoch, number, payload = self.inbox.popleft()
        h = self.handovers[number]
        if kind == "rows":
            h.on(E.ROWS_RECEIVED, sender=sender, epoch=epoch, number=number)
            self.held[number] = payload
            self.adopt(h, number)
        else:
            h.on(E.ADOPTED, sender=sender, epoch=epoch, number=number)


def edge_deliver(edge: SimEdge, gateway: SimGateway) -> None:
    """The edge takes one message between two of its ticks."""
    kind, epoch, number, payload = edge.inbox.popleft()
    if kind == "release":
        rows = {a: edge.rows.pop(a) for a in payload.tolist()}
        gateway.inbox.append(("rows", edge.name, epoch, number, rows))
    else:
        edge.rows.update(payload)
        gateway.inbox.append(("adopted", edge.name, epoch, number, None))


def checkpoint(edge: SimEdge, gateway: SimGateway) -> None:
    gateway.checkpoints.update(edge.rows)


def setup(
    names: list[str], ids: NDArray[np.uint32], change: Callable[[Membership], Membership]
) -> tuple[SimGateway, list[Handover], Assignment]:
    membership = Membership()
    for name in names:
        membership = membership.joined(name)
    old = assign(ids, membership)
    edges = {n: SimEdge(n) for n in names}
    for agent, owner in zip(old.ids.tolist(), old.owner_names().tolist(), strict=True):
        edges[owner].rows[agent] = (0, 0)
    new_membership = change(membership)
    for name in new_membership.members:
        edges.setdefault(name, SimEdge(name))
    new = assign(ids, new_membership)
    plan = plan_moves(old, new, new_membership, batch_size=7)
    gateway = SimGateway(new_membership, edges, checkpoints={a: (0, 0) for a in ids.tolist()})
    handovers = [Handover(b, new.epoch, i) for i, b in enumerate(plan.batches)]
    return gateway, handovers, new


def run(
    gateway: SimGateway,
    handovers: list[Handover],
    schedule: list[tuple[str, int]],
    log: list[tuple[int, int, str]],
) -> None:
    for edge in gateway.edges.values():
        checkpoint(edge, gateway)
    gateway.start(handovers)
    for action, index in schedule:
        names = sorted(gateway.edges)
        edge = gateway.edges[names[index % len(names)]]
        if action == "tick" and edge.alive:
            edge.tick(log)
        elif action == "edge_msg" and edge.alive and edge.inbox:
            edge_deliver(edge, gateway)
        elif action == "gw_msg" and gateway.inbox:
            gateway.deliver()
        elif action == "checkpoint" and edge.alive:
            checkpoint(edge, gateway)
    # Drain: deliver everything left, alternating with ticks, bounded.
    for _ in range(1000):
        if all(h.finished for h in handovers):
            break
        for edge in gateway.edges.values():
            if edge.alive:
                edge.tick(log)
                while edge.inbox:
                    edge_deliver(edge, gateway)
        while gateway.inbox:
            gateway.deliver()
    assert all(h.finished for h in handovers)


schedules = st.lists(
    st.tuples(st.sampled_from(["tick", "edge_msg", "gw_msg", "checkpoint"]), st.integers(0, 5)),
    max_size=60,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules, drain=st.booleans())
def test_live_moves_step_every_agent_exactly_once_per_tick_on_one_edge(schedule, drain):
    ids = np.arange(60, dtype=np.uint32)
    names = ["edge-a", "edge-b", "edge-c"]
    change = (
        (lambda m: m.with_state("edge-b", MemberState.DRAINING))
        if drain
        else (lambda m: m.joined("edge-d"))
    )
    gateway, handovers, new = setup(names, ids, change)
    log: list[tuple[int, int, str]] = []
    run(gateway, handovers, schedule, log)
    # Owned by exactly one edge, the one the new assignment names.
    holders: dict[int, list[str]] = {}
    for edge in gateway.edges.values():
        for agent in edge.rows:
            holders.setdefault(agent, []).append(edge.name)
    assert {a: h for a, h in holders.items()} == {
        a: [o] for a, o in zip(new.ids.tolist(), new.owner_names().tolist(), strict=True)
    }
    # Per agent, the logged ticks are 1, 2, ..., n: none twice, none skipped;
    # and the state (steps taken) equals the last tick.
    per_agent: dict[int, list[int]] = {}
    for agent, tick, _edge in log:
        per_agent.setdefault(agent, []).append(tick)
    for agent in ids.tolist():
        ticks = per_agent.get(agent, [])
        assert ticks == list(range(1, len(ticks) + 1)), (agent, ticks)
        tick, state = next(e.rows[agent] for e in gateway.edges.values() if agent in e.rows)
        assert tick == state == len(ticks)


def test_a_source_that_dies_while_releasing_resumes_from_its_checkpoint_without_a_tick_twice():
    ids = np.arange(40, dtype=np.uint32)
    names = ["edge-a", "edge-b"]
    gateway, handovers, _new = setup(names, ids, lambda m: m.joined("edge-c"))
    log: list[tuple[int, int, str]] = []
    for edge in gateway.edges.values():
        checkpoint(edge, gateway)
    for _ in range(3):
        for edge in gateway.edges.values():
            edge.tick(log)
    for edge in gateway.edges.values():
        checkpoint(edge, gateway)  # checkpoint at tick 3
    for _ in range(2):
        for edge in gateway.edges.values():
            edge.tick(log)  # ticks 4, 5 logged, not checkpointed
    gateway.start(handovers)
    dead = gateway.edges["edge-a"]
    dead.alive = False
    dead.inbox.clear()
    logged: dict[int, int] = {}
    for agent, tick, _ in log:
        logged[agent] = max(tick, logged.get(agent, 0))
    for number, h in enumerate(handovers):
        if h.state is HandoverState.RELEASING and h.batch.source == "edge-a":
            batch_ids = h.batch.ids.tolist()
            ckpt_ticks = np.array([gateway.checkpoints[a][0] for a in batch_ids], dtype=np.uint64)
            seen = np.array([logged[a] for a in batch_ids], dtype=np.uint64)
            first = resume_ticks(ckpt_ticks, seen)
            for agent, start in zip(batch_ids, first.tolist(), strict=True):
                gateway.checkpoints[agent] = (start - 1, gateway.checkpoints[agent][1])
            gateway.restore(h, number)
    for edge in gateway.edges.values():
        if edge.alive:
            while edge.inbox:
                edge_deliver(edge, gateway)
            edge.tick(log)
    while gateway.inbox:
        gateway.deliver()
    moved = [a for h in handovers if h.batch.source == "edge-a" for a in h.batch.ids.tolist()]
    assert moved
    assert all(h.finished for h in handovers if h.batch.source == "edge-a")
    seen_pairs = [(a, t) for a, t, _ in log]
    assert len(seen_pairs) == len(set(seen_pairs)), "a tick was stepped twice"
    for agent in moved:
        tick, state = gateway.edges["edge-c"].rows[agent]
        assert tick == 6
        assert state == 4


def batch_handover() -> Handover:
    membership = Membership().joined("edge-a").joined("edge-b")
    old = assign(np.arange(10, dtype=np.uint32), membership)
    new_m = membership.with_state("edge-a", MemberState.DRAINING)
    plan = plan_moves(old, assign(np.arange(10, dtype=np.uint32), new_m), new_m)
    return Handover(plan.batches[0], new_m.epoch, 0)


def test_stale_epoch_wrong_sender_and_forbidden_events_are_refused_and_change_nothing():
    h = batch_handover()
    h.on(E.RELEASE_SENT, sender="gateway", epoch=h.epoch, number=0)
    with pytest.raises(HandoverRefusedError, match="stale"):
        h.on(E.ROWS_RECEIVED, sender="edge-a", epoch=h.epoch - 1, number=0)
    with pytest.raises(HandoverRefusedError, match="must come from edge-a"):
        h.on(E.ROWS_RECEIVED, sender="edge-b", epoch=h.epoch, number=0)
    with pytest.raises(HandoverRefusedError, match="not allowed"):
        h.on(E.ADOPTED, sender="edge-b", epoch=h.epoch, number=0)
    assert h.state is HandoverState.RELEASING
    assert h.holder() == "edge-a"
    h.on(E.ROWS_RECEIVED, sender="edge-a", epoch=h.epoch, number=0)
    assert h.holder() is None
    h.on(E.ADOPT_SENT, sender="gateway", epoch=h.epoch, number=0)
    h.on(E.ADOPTED, sender="edge-b", epoch=h.epoch, number=0)
    assert h.finished
    assert h.holder() == "edge-b"
    assert h.history == [
        HandoverState.PLANNED,
        HandoverState.RELEASING,
        HandoverState.HELD,
        HandoverState.ADOPTING,
    ]


def test_the_table_in_the_docstring_is_the_table_in_the_code():
    rows = re.findall(
        r"^\s{4}([A-Z]+)\s+([A-Z_]+)\s+([A-Z]+)\s+(gateway|the source edge|the target edge)",
        handover_module.__doc__,
        re.MULTILINE,
    )
    role = {"gateway": "gateway", "the source edge": "source", "the target edge": "target"}
    documented = {
        (HandoverState[s], HandoverEvent[e]): (HandoverState[n], role[who]) for s, e, n, who in rows
    }
    assert documented == handover_module.TRANSITIONS
