"""The gateway's placement with edges (``placement_edges.py``) against simulated edges.

Each simulated edge applies ASSIGN the way ``edge/placed_agents.py`` does: the newest
complete set at a tick boundary, its own rows kept for agents it runs already (also
across sessions: its table outlives them), the rows it drops given back first
(CHECKPOINT at that set's epoch), periodic checkpoints at its applied epoch, nothing
stepped while fenced. The real ``PlacementEdges`` and ``PlacementService`` run on a
real ``placement.db``; frames in both directions are delivered in an order a seeded
random choice picks, between drains, undrains, weights, new agents, sessions that
end and come back, and edges going DOWN. Checked after every event: no agent on two
stepping edges, no agent's tick stepped twice or going back (across all edges),
never more than ``--max-moves`` agents on their way; at the end every edge runs
exactly what the assignment says.

(Written as a review of the bounded moves; it found that an edge coming back kept
its stale rows of agents another edge had run meanwhile and stepped their ticks
again: the detaching cases failed before ``PlacementEdges`` withheld those.)
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import pytest

from edgeswarm.edge.placed_agents import AssignmentParts
from edgeswarm.gateway.placement_edges import PlacementEdges
from edgeswarm.gateway.placement_service import PlacementService
from edgeswarm.wire import Assign, Checkpoint, Frame

from .test_placement_service import Fleet

AGENTS = 300


class SimEdge:
    """Applies the newest complete ASSIGN at a tick boundary, gives dropped rows back
    (CHECKPOINT at that epoch) then periodic checkpoints at its applied epoch."""

    def __init__(self, name: str, world: Sim) -> None:
        self.name, self.world = name, world
        self.parts = AssignmentParts()
        self.table: dict[int, int] = {}
        self.epoch: int | None = None
        self.inbox: list[Frame] = []  # gateway -> edge, in order
        self.outbox: list[Checkpoint] = []  # edge -> gateway, in order
        self.attached = False
        self.may_step = False
        self.since = 0

    def send(self, frame: Frame) -> None:  # the gateway's send
        self.inbox.append(frame)

    def deliver_in(self, n: int) -> None:
        for frame in self.inbox[:n]:
            if isinstance(frame, Assign) and self.parts.receive(frame):
                self.may_step = True  # a complete set in this session: lease held
        del self.inbox[:n]

    def tick(self) -> None:
        if not self.attached or not self.may_step:
            return  # fenced
        assign = self.parts.take()
        if assign is not None:
            new = set(int(i) for i in assign.agent_ids)
            gone = [i for i in self.table if i not in new]
            self.outbox.append(
                Checkpoint(
                    epoch=assign.epoch,
                    tick=0,
                    agent_ids=np.array(gone, np.uint32),
                    ticks=np.array([self.table[i] for i in gone], np.uint64),
                    state=np.zeros((len(gone), 2), np.float32),
                )
            )
            for i in gone:
                del self.table[i]
            for i, t in zip(assign.agent_ids, assign.ticks, strict=True):
                if int(i) not in self.table:
                    self.table[int(i)] = int(t)
            self.epoch = assign.epoch
            self.world.check_disjoint()
        for i in self.table:
            self.table[i] += 1
            self.world.stepped(i, self.table[i], self.name)
        ids = np.array(sorted(self.table), np.uint32)
        if ids.size:
            ticks = np.array([self.table[int(i)] for i in ids], np.int64)
            for t in np.unique(ticks):  # the gateway's log of these steps
                self.world.edges.observed(ids[ticks == t], int(t))
        self.since += 1
        if self.since >= 3 and self.epoch is not None:
            self.since = 0
            self.outbox.append(
                Checkpoint(
                    epoch=self.epoch,
                    tick=0,
                    agent_ids=ids,
                    ticks=np.array([self.table[int(i)] for i in ids], np.uint64),
                    state=np.zeros((ids.size, 2), np.float32),
                )
            )

    def deliver_out(self, n: int) -> None:
        for frame in self.outbox[:n]:
            if self.attached:
                self.world.edges.checkpoint(self.name, frame)
        del self.outbox[:n]

    def attach(self) -> None:
        self.attached, self.may_step, self.inbox, self.outbox = True, False, [], []
        self.world.fleet.live.add(self.name)
        self.world.fleet.service.edge_connected(self.name)
        self.world.edges.attach(self.name, self.send, max_rows=64)

    def detach(self) -> None:
        if self.world.forget_on_detach:
            self.table = {}  # (a hypothetical edge that forgets its rows with the session)
        self.attached, self.may_step = False, False
        self.inbox, self.outbox = [], []
        self.world.fleet.live.discard(self.name)
        self.world.edges.detach(self.name, self.send)


class Sim:
    def __init__(self, fleet: Fleet, max_moves: int, seed: int, bounded: bool = True) -> None:
        self.fleet = fleet
        service = fleet.service
        self.edges = PlacementEdges(
            fleet.store,
            service.refresh,
            next_round=service.next_round if bounded else None,
            max_moves=max_moves,
        )
        if not bounded:
            max_moves = 10**9
        service.on_assignment = self.edges.assignment_changed
        self.rng = random.Random(seed)
        self.last: dict[int, tuple[int, str]] = {}
        self.sim: dict[str, SimEdge] = {}
        self.max_moves = max_moves
        self.forget_on_detach = False

    def add(self, *names: str) -> None:
        for name in names:
            self.sim[name] = SimEdge(name, self)
            self.sim[name].attach()

    def stepped(self, agent: int, tick: int, by: str) -> None:
        last = self.last.get(agent)
        assert last is None or tick > last[0], f"agent {agent} tick {tick} by {by}, last {last}"
        self.last[agent] = (tick, by)

    def check_disjoint(self) -> None:
        seen: dict[int, str] = {}
        for name, e in self.sim.items():
            if not (e.attached and e.may_step) or e.parts.complete is not None:
                continue  # fenced, or a set to apply before it steps again
            for i in e.table:
                assert i not in seen, f"agent {i} on {seen[i]} and {name}"
                seen[i] = name

    def step(self) -> None:
        e = self.rng.choice(list(self.sim.values()))
        r = self.rng.random()
        if r < 0.35:
            e.deliver_in(self.rng.randint(1, 3))
        elif r < 0.7:
            e.tick()
        else:
            e.deliver_out(self.rng.randint(1, 2))
        assert self.edges.moving() <= self.max_moves

    def settle(self, steps: int = 4000) -> None:
        for _ in range(steps):
            self.step()


def final_owners_ok(sim: Sim) -> None:
    a = sim.fleet.service.refresh()
    for name, e in sim.sim.items():
        if e.attached:
            assert sorted(e.table) == sorted(int(i) for i in a.ids_of(name)), name


@pytest.mark.parametrize("seed", range(3))
def test_two_drains_an_undrain_and_a_weight_settle_on_the_assignment(
    open_fleet: Callable[[], Fleet], seed: int
) -> None:
    fleet = open_fleet()
    fleet.ask("agents.add", first_id=0, count=AGENTS, policy="boids")
    sim = Sim(fleet, max_moves=17, seed=seed)
    sim.add("a", "b", "c")
    sim.settle(300)
    fleet.ask("edges.drain", edge_id="b")
    sim.settle(200)
    fleet.ask("edges.drain", edge_id="c")
    sim.settle(200)
    fleet.ask("edges.undrain", edge_id="b")
    sim.settle(200)
    fleet.ask("edges.weight", edge_id="a", weight=3.0)
    sim.settle(6000)
    final_owners_ok(sim)


@pytest.mark.parametrize("seed", range(4))
def test_a_session_that_ends_and_comes_back_mid_drain_settles(
    open_fleet: Callable[[], Fleet], seed: int
) -> None:
    fleet = open_fleet()
    fleet.ask("agents.add", first_id=0, count=AGENTS, policy="boids")
    sim = Sim(fleet, max_moves=13, seed=seed)
    sim.add("a", "b", "c")
    sim.settle(300)
    fleet.ask("edges.drain", edge_id="b")
    sim.settle(150)
    who = sim.rng.choice(["a", "b", "c"])
    sim.sim[who].detach()
    sim.settle(100)
    sim.sim[who].attach()
    sim.settle(100)
    fleet.ask("agents.add", first_id=AGENTS, count=50, policy="boids")
    sim.settle(6000)
    final_owners_ok(sim)


def test_after_a_restart_mid_drain_the_epoch_is_above_every_round(
    open_fleet: Callable[[], Fleet],
) -> None:
    fleet = open_fleet()
    fleet.ask("agents.add", first_id=0, count=AGENTS, policy="boids")
    sim = Sim(fleet, max_moves=10, seed=1)
    sim.add("a", "b")
    sim.settle(200)
    fleet.ask("edges.drain", edge_id="b")
    sim.settle(400)
    top = max(e.parts.newest_epoch for e in sim.sim.values())
    again = PlacementService(
        fleet.store, lambda: frozenset(fleet.live), edge_timeout_s=5.0, clock=lambda: fleet.now
    )
    assert again.refresh().epoch > top
    # and the live service: a real change goes above every round
    fleet.ask("edges.undrain", edge_id="b")
    assert fleet.service.refresh().epoch > top


@pytest.mark.parametrize("seed", range(8))
def test_any_operations_and_deliveries_keep_every_agent_on_one_edge_once_per_tick(
    open_fleet: Callable[[], Fleet], seed: int
) -> None:
    detaching, bounded, forget = seed % 4 != 3, seed % 2 == 0, False
    fleet = open_fleet()
    fleet.ask("agents.add", first_id=0, count=200, policy="boids")
    rng = random.Random(seed)
    sim = Sim(fleet, max_moves=rng.choice([1, 5, 23]), seed=seed, bounded=bounded)
    sim.forget_on_detach = forget
    sim.add("a", "b", "c", "d")
    next_id = 200
    for _ in range(25):
        sim.settle(rng.randint(5, 80))
        op = rng.random()
        name = rng.choice("abcd")
        if op < 0.25:
            fleet.ask("edges.drain", edge_id=name)
        elif op < 0.45:
            fleet.ask("edges.undrain", edge_id=name)
        elif op < 0.6:
            fleet.ask("edges.weight", edge_id=name, weight=rng.choice([0.5, 1.0, 2.0, 3.0]))
        elif op < 0.75:
            fleet.ask("agents.add", first_id=next_id, count=15, policy="boids")
            next_id += 15
        elif op < 0.9 and detaching:
            e = sim.sim[name]
            if e.attached:
                e.detach()
            else:
                e.attach()
        else:
            fleet.now += 6.0  # gone edges go DOWN
            fleet.service.refresh()
    for e in sim.sim.values():
        if not e.attached:
            e.attach()
    for name in "abcd":
        fleet.ask("edges.undrain", edge_id=name)
    sim.settle(15000)
    final_owners_ok(sim)
    assert sim.edges.moving() == 0


def test_drains_shards_and_edges_agree_on_the_epoch_mid_drain(
    open_fleet: Callable[[], Fleet],
) -> None:
    fleet = open_fleet()
    fleet.ask("agents.add", first_id=0, count=AGENTS, policy="boids")
    sim = Sim(fleet, max_moves=10, seed=3)
    sim.add("a", "b", "c")
    sim.settle(200)
    first = fleet.ask("edges.drain", edge_id="b")
    assert first["moves"] > 0
    sim.settle(150)
    second = fleet.ask("edges.drain", edge_id="c")  # while b's rounds go on
    assert second["moves"] > 0, second
    shards = fleet.ask("shards")
    listed = fleet.ask("edges.list")
    assert shards["epoch"] == listed["epoch"] == fleet.store.epoch()
