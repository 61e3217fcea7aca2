"""The migration coordinator (edgeswarm.placement.migration) driving simulated edges.

Simulated edges hold rows ``{agent: (tick, state)}`` and step every row they
hold once per edge tick, writing ``(agent, tick)`` to a log as the gateway's
durable log would. Commands of the coordinator and answers of the edges sit
in queues and are delivered in an order hypothesis picks, interleaved with
edge ticks, checkpoints and failures. The invariants of
edgeswarm/placement/handover.py are checked on the log and the edges' rows.
"""

from __future__ import annotations

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
    HandoverRefusedError,
    HandoverState,
    Membership,
    MemberState,
    assign,
    plan_moves,
)
from edgeswarm.placement.migration import (
    AdoptRows,
    Command,
    LoadCheckpoints,
    MigrationCoordinator,
    ReleaseAgents,
    RowBlock,
    StoreCheckpoints,
)

Log = list[tuple[int, int, str]]


def block(rows: dict[int, tuple[int, int]]) -> RowBlock:
    ids = np.array(sorted(rows), dtype=np.uint32)
    return RowBlock(
        ids=ids,
        ticks=np.array([rows[a][0] for a in ids.tolist()], dtype=np.uint64),
        state=np.array([[rows[a][1]] for a in ids.tolist()], dtype=np.float32).reshape(-1, 1),
        policy=np.zeros(ids.size, dtype=np.uint16),
    )


def unblock(rows: RowBlock) -> dict[int, tuple[int, int]]:
    return {
        int(a): (int(t), int(s))
        for a, t, s in zip(rows.ids, rows.ticks, rows.state[:, 0], strict=True)
    }


@dataclass
class SimEdge:
    name: str
    rows: dict[int, tuple[int, int]] = field(default_factory=dict)
    inbox: deque[Command] = field(default_factory=deque)
    alive: bool = True

    def tick(self, log: Log) -> None:
        for agent, (tick, state) in self.rows.items():
            self.rows[agent] = (tick + 1, state + 1)
            log.append((agent, tick + 1, self.name))


@dataclass
class Sim:
    coordinator: MigrationCoordinator
    edges: dict[str, SimEdge]
    checkpoints: dict[int, tuple[int, int]]
    log: Log = field(default_factory=list)
    to_gateway: deque[tuple[Any, ...]] = field(default_factory=deque)
    most_in_flight: int = 0

    def run(self, commands: list[Command]) -> None:
        self.most_in_flight = max(self.most_in_flight, self.coordinator.in_flight)
        for command in commands:
            match command:
                case ReleaseAgents(edge=edge) | AdoptRows(edge=edge):
                    if self.edges[edge].alive:
                        self.edges[edge].inbox.append(command)
                case LoadCheckpoints(batch=batch, ids=ids):
                    rows = block({a: self.checkpoints[a] for a in ids.tolist()})
                    self.run(self.coordinator.checkpoints_loaded(batch, rows, self.logged(ids)))
                case StoreCheckpoints(rows=rows):
                    self.checkpoints.update(unblock(rows))

    def logged(self, ids: NDArray[np.uint32]) -> NDArray[np.uint64]:
        last: dict[int, int] = {}
        for agent, tick, _ in self.log:
            last[agent] = max(tick, last.get(agent, 0))
        return np.array([last.get(a, 0) for a in ids.tolist()], dtype=np.uint64)

    def edge_takes_one(self, edge: SimEdge) -> None:
        """The edge handles one command between two of its ticks."""
        command = edge.inbox.popleft()
        if isinstance(command, ReleaseAgents):
            rows = {a: edge.rows.pop(a) for a in command.ids.tolist()}
            self.to_gateway.append(("rows", edge.name, command.epoch, command.batch, block(rows)))
        elif isinstance(command, AdoptRows):
            edge.rows.update(unblock(command.rows))
            self.to_gateway.append(("adopted", edge.name, command.epoch, command.batch))

    def gateway_takes_one(self) -> None:
        kind, sender, epoch, batch, *rows = self.to_gateway.popleft()
        if not self.edges[sender].alive:
            return
        if kind == "rows":
            self.run(self.coordinator.rows_received(sender, epoch, batch, rows[0]))
        else:
            self.run(self.coordinator.adopted(sender, epoch, batch))

    def checkpoint(self, edge: SimEdge) -> None:
        self.checkpoints.update(edge.rows)

    def kill(self, edge: SimEdge) -> None:
        edge.alive = False
        edge.inbox.clear()
        edge.rows.clear()
        self.run(self.coordinator.edge_down(edge.name))

    def play(self, schedule: list[tuple[str, int]]) -> None:
        """Ticks, deliveries and checkpoints in the order ``schedule`` says (live edges)."""
        for action, index in schedule:
            names = sorted(n for n, e in self.edges.items() if e.alive)
            edge = self.edges[names[index % len(names)]]
            if action == "tick":
                edge.tick(self.log)
            elif action == "edge" and edge.inbox:
                self.edge_takes_one(edge)
            elif action == "gateway" and self.to_gateway:
                self.gateway_takes_one()
            elif action == "checkpoint":
                self.checkpoint(edge)

    def settle(self) -> None:
        """Deliver everything left, alternating with ticks (bounded)."""
        for _ in range(1000):
            if self.coordinator.finished:
                return
            for edge in self.edges.values():
                if edge.alive:
                    edge.tick(self.log)
                    while edge.inbox:
                        self.edge_takes_one(edge)
            while self.to_gateway:
                self.gateway_takes_one()
        raise AssertionError("the plan did not finish")


def start(
    names: list[str],
    ids: NDArray[np.uint32],
    change: Callable[[Membership], Membership],
    max_in_flight: int = 2,
) -> tuple[Sim, Assignment]:
    membership = Membership()
    for name in names:
        membership = membership.joined(name)
    old = assign(ids, membership)
    edges = {n: SimEdge(n) for n in names}
    for agent, owner in zip(old.ids.tolist(), old.owner_names().tolist(), strict=True):
        edges[owner].rows[agent] = (0, 0)
    changed = change(membership)
    for name in changed.members:
        edges.setdefault(name, SimEdge(name))
    new = assign(ids, changed)
    plan = plan_moves(old, new, changed, batch_size=7)
    coordinator = MigrationCoordinator(plan, max_in_flight=max_in_flight)
    sim = Sim(coordinator, edges, checkpoints={a: (0, 0) for a in ids.tolist()})
    return sim, new


def ticks_per_agent(log: Log) -> dict[int, list[int]]:
    per_agent: dict[int, list[int]] = {}
    for agent, tick, _ in log:
        per_agent.setdefault(agent, []).append(tick)
    return per_agent


schedules = st.lists(
    st.tuples(st.sampled_from(["tick", "edge", "gateway", "checkpoint"]), st.integers(0, 5)),
    max_size=80,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules, drain=st.booleans(), max_in_flight=st.integers(1, 4))
def test_live_moves_step_every_agent_exactly_once_per_tick_on_one_edge(
    schedule: list[tuple[str, int]], drain: bool, max_in_flight: int
) -> None:
    ids = np.arange(60, dtype=np.uint32)
    change = (
        (lambda m: m.with_state("edge-b", MemberState.DRAINING))
        if drain
        else (lambda m: m.joined("edge-d"))
    )
    sim, new = start(["edge-a", "edge-b", "edge-c"], ids, change, max_in_flight)
    sim.run(sim.coordinator.start())
    sim.play(schedule)
    sim.settle()
    assert sim.most_in_flight <= max_in_flight
    holders: dict[int, list[str]] = {}
    for edge in sim.edges.values():
        for agent in edge.rows:
            holders.setdefault(agent, []).append(edge.name)
    expected = {a: [o] for a, o in zip(new.ids.tolist(), new.owner_names().tolist(), strict=True)}
    assert holders == expected  # every agent on exactly one edge, the one the plan names
    per_agent = ticks_per_agent(sim.log)
    for agent in ids.tolist():
        ticks = per_agent.get(agent, [])
        assert ticks == list(range(1, len(ticks) + 1)), (agent, ticks)  # none twice or skipped
        tick, state = next(e.rows[agent] for e in sim.edges.values() if agent in e.rows)
        assert tick == state == len(ticks)  # its state is its last step
    assert sim.coordinator.agents_done() == sum(b.ids.size for b in sim.coordinator.plan.batches)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=schedules, victim=st.sampled_from(["edge-a", "edge-b", "edge-c"]))
def test_a_killed_edge_never_makes_a_tick_run_twice(
    schedule: list[tuple[str, int]], victim: str
) -> None:
    ids = np.arange(60, dtype=np.uint32)
    sim, _ = start(["edge-a", "edge-b"], ids, lambda m: m.joined("edge-c"))
    sim.run(sim.coordinator.start())
    half = len(schedule) // 2
    sim.play(schedule[:half])
    sim.kill(sim.edges[victim])
    sim.play(schedule[half:])
    sim.settle()
    pairs = [(a, t) for a, t, _ in sim.log]
    assert len(pairs) == len(set(pairs)), "a tick was stepped twice"
    owners: dict[int, int] = {}
    for edge in sim.edges.values():
        for agent in edge.rows:
            owners[agent] = owners.get(agent, 0) + 1
    assert all(n == 1 for n in owners.values()), "an agent is on two edges"
    for edge in sim.edges.values():
        for tick, state in edge.rows.values():
            assert state <= tick  # state lost across a failure, never invented


def test_a_source_killed_while_releasing_resumes_from_its_checkpoint() -> None:
    ids = np.arange(40, dtype=np.uint32)
    sim, _ = start(["edge-a", "edge-b"], ids, lambda m: m.joined("edge-c"), max_in_flight=99)
    for _ in range(3):
        for edge in sim.edges.values():
            edge.tick(sim.log)
    for edge in sim.edges.values():
        sim.checkpoint(edge)  # checkpoint at tick 3
    for _ in range(2):
        for edge in sim.edges.values():
            edge.tick(sim.log)  # ticks 4 and 5 logged, not checkpointed
    sim.run(sim.coordinator.start())
    from_a = [h for h in sim.coordinator.handovers if h.batch.source == "edge-a"]
    assert from_a
    assert all(h.state is HandoverState.RELEASING for h in from_a)
    sim.kill(sim.edges["edge-a"])
    sim.settle()
    for h in from_a:
        for agent in h.batch.ids.tolist():
            # resumed after the last logged tick (5), from the state of the checkpoint (3)
            assert sim.edges["edge-c"].rows[agent] == (6, 4)
    pairs = [(a, t) for a, t, _ in sim.log]
    assert len(pairs) == len(set(pairs))


def test_a_target_killed_while_adopting_parks_the_rows_as_checkpoints() -> None:
    ids = np.arange(40, dtype=np.uint32)
    sim, _ = start(["edge-a", "edge-b"], ids, lambda m: m.joined("edge-c"), max_in_flight=99)
    sim.run(sim.coordinator.start())
    for name in ("edge-a", "edge-b"):
        edge = sim.edges[name]
        edge.tick(sim.log)
        while edge.inbox:
            sim.edge_takes_one(edge)
    while sim.to_gateway:
        sim.gateway_takes_one()
    assert all(h.state is HandoverState.ADOPTING for h in sim.coordinator.handovers)
    sim.kill(sim.edges["edge-c"])
    assert sim.coordinator.finished
    assert all(h.state is HandoverState.PARKED for h in sim.coordinator.handovers)
    moved = [a for h in sim.coordinator.handovers for a in h.batch.ids.tolist()]
    assert all(sim.checkpoints[a] == (1, 1) for a in moved)  # their rows at the hand-over


def test_rows_that_are_not_the_batches_agents_and_stale_epochs_are_refused() -> None:
    ids = np.arange(40, dtype=np.uint32)
    sim, _ = start(["edge-a", "edge-b"], ids, lambda m: m.joined("edge-c"), max_in_flight=1)
    [release] = sim.coordinator.start()
    assert isinstance(release, ReleaseAgents)
    source = sim.edges[release.edge]
    rows = {a: source.rows[a] for a in release.ids.tolist()}
    extra = {**rows, 39 if 39 not in rows else 38: (0, 0)}
    with pytest.raises(HandoverRefusedError, match="not its agents"):
        sim.coordinator.rows_received(release.edge, release.epoch, release.batch, block(extra))
    with pytest.raises(HandoverRefusedError, match="stale"):
        sim.coordinator.rows_received(release.edge, release.epoch - 1, release.batch, block(rows))
    with pytest.raises(HandoverRefusedError, match="must come from"):
        sim.coordinator.rows_received("edge-c", release.epoch, release.batch, block(rows))
    assert sim.coordinator.handovers[release.batch].state is HandoverState.RELEASING
    [adopt] = sim.coordinator.rows_received(release.edge, release.epoch, release.batch, block(rows))
    assert isinstance(adopt, AdoptRows)
    assert adopt.edge == "edge-c"
