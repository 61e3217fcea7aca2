"""The gateway's hand-over of agents between edges (``placement_edges.py``), sans sockets.

A real ``placement.db`` and placement service; edges are lists of the frames sent
to them. A moving agent is never held by two edges: it reaches its new owner only
after the old one gave its row back, with that row's tick and state.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.placed_agents import PlacedAgents
from edgeswarm.gateway.placement_edges import PlacementEdges
from edgeswarm.placement.moves import DEFAULT_MAX_MOVES
from edgeswarm.wire import Assign, Checkpoint, ErrorCode, Frame

from .test_placement_service import Fleet

AGENTS = 300


class Edge:
    def __init__(self, edges: PlacementEdges, name: str) -> None:
        self.name, self.frames = name, list[Frame]()
        edges.attach(name, self.frames.append, max_rows=128)

    def holds_released(self, other: Edge) -> np.ndarray:
        """Agents of ours the gateway assigned to ``other`` (we give them back)."""
        first = next(f for f in self.frames if isinstance(f, Assign))
        return np.setdiff1d(first.agent_ids, self.last_set().agent_ids)

    def last_set(self) -> Assign:
        """The newest complete ASSIGN set (its parts joined)."""
        parts = [f for f in self.frames if isinstance(f, Assign)]
        last = parts[-1]
        mine = [p for p in parts if p.epoch == last.epoch][-last.parts :]
        ids = np.concatenate([p.agent_ids for p in mine])
        return Assign(
            epoch=last.epoch,
            part=0,
            parts=1,
            agent_ids=ids,
            policy=np.concatenate([p.policy for p in mine]),
            ticks=np.concatenate([p.ticks for p in mine]),
            state=np.concatenate([p.state for p in mine]),
            policy_names=last.policy_names,
        )


@pytest.fixture
def fleet(open_fleet: Callable[[], Fleet]) -> Fleet:
    fleet = open_fleet()
    fleet.ask("agents.add", first_id=0, count=AGENTS, policy="boids")
    return fleet


def wired(
    fleet: Fleet, *, max_moves: int = DEFAULT_MAX_MOVES, lease_ticks: int = 0
) -> PlacementEdges:
    """Edges wired to the fleet's placement service the way the gateway wires them."""
    service = fleet.service
    edges = PlacementEdges(
        fleet.store,
        service.refresh,
        next_round=service.next_round,
        max_moves=max_moves,
        lease_ticks=lease_ticks,
    )
    service.on_assignment = edges.assignment_changed
    return edges


def rows(ids: np.ndarray, tick: int, value: float, epoch: int) -> Checkpoint:
    return Checkpoint(
        epoch=epoch,
        tick=tick,
        agent_ids=ids.astype(np.uint32),
        ticks=np.full(ids.shape[0], tick, np.uint64),
        state=np.full((ids.shape[0], 2), value, np.float32),
    )


def test_a_drained_edges_agents_wait_for_their_rows_then_move_with_them(fleet: Fleet) -> None:
    edges = wired(fleet)
    fleet.connect("a", "b")
    a, b = Edge(edges, "a"), Edge(edges, "b")
    held_a, held_b = a.last_set().agent_ids, b.last_set().agent_ids
    assert held_a.size + held_b.size == AGENTS
    assert not np.intersect1d(held_a, held_b).size
    assert edges.checkpoint("b", rows(held_b, 40, 1.0, a.last_set().epoch)) is None

    fleet.ask("edges.drain", edge_id="b")
    # a is assigned b's agents, but b still holds them: a gets none of them yet
    assert b.last_set().agent_ids.size == 0
    assert np.array_equal(a.last_set().agent_ids, held_a)
    assert sum(edges.holders().values()) == AGENTS

    epoch = b.last_set().epoch
    assert edges.checkpoint("b", rows(held_b, 41, 2.0, epoch - 1)) is None  # periodic, older
    assert a.last_set().agent_ids.size == held_a.size  # not a hand-back: still withheld
    assert edges.checkpoint("b", rows(held_b, 42, 3.0, epoch)) is None  # b gave them back
    moved = a.last_set()
    assert moved.agent_ids.size == AGENTS
    came = np.isin(moved.agent_ids, held_b)
    assert (moved.ticks[came] == 42).all()  # they go on from the tick b stepped last
    assert (moved.state[came] == 3.0).all()
    assert edges.holders() == {"a": AGENTS, "b": 0}


def test_rows_of_agents_an_edge_does_not_hold_are_refused(fleet: Fleet) -> None:
    edges = wired(fleet)
    fleet.connect("a", "b")
    a, b = Edge(edges, "a"), Edge(edges, "b")
    theirs = b.last_set().agent_ids[:5]
    error = edges.checkpoint("a", rows(theirs, 9, 9.0, a.last_set().epoch))
    assert error is not None
    assert error.code == ErrorCode.NOT_OWNER
    assert all(fleet.store.checkpoints.one(int(agent)) is None for agent in theirs)


def test_a_gone_edges_agents_go_on_from_their_last_checkpoints(fleet: Fleet) -> None:
    edges = wired(fleet)
    fleet.connect("a", "b")
    a, b = Edge(edges, "a"), Edge(edges, "b")
    held_b = b.last_set().agent_ids
    edges.checkpoint("b", rows(held_b, 17, 5.0, b.last_set().epoch))
    fleet.live.discard("b")
    edges.detach("b", b.frames.append)
    assert a.last_set().agent_ids.size == AGENTS - held_b.size  # still b's until DOWN
    fleet.now += 10.0  # past --edge-timeout
    fleet.service.refresh()
    restored = a.last_set()
    assert restored.agent_ids.size == AGENTS
    came = np.isin(restored.agent_ids, held_b)
    assert (restored.ticks[came] == 17).all()
    assert (restored.state[came] == 5.0).all()


def test_every_assign_carries_every_rows_checkpoint(fleet: Fleet) -> None:
    """An edge applies only its newest ASSIGN: rows of an earlier one it never applied
    must not start over from tick 0 (they did: only 'new' rows carried checkpoints)."""
    edges = wired(fleet)
    fleet.connect("a")
    a = Edge(edges, "a")
    held = a.last_set().agent_ids
    assert edges.checkpoint("a", rows(held, 30, 4.0, a.last_set().epoch)) is None
    fleet.connect("b")
    b = Edge(edges, "b")
    edges.checkpoint("a", rows(a.holds_released(b), 31, 4.0, a.last_set().epoch))
    fleet.connect("c")
    Edge(edges, "c")
    again = a.last_set()  # a keeps some agents it was sent before: they carry tick 30
    assert again.agent_ids.size
    assert (again.ticks >= 30).all()


def test_an_edge_that_never_applied_a_set_frees_its_agents_by_saying_its_epoch(
    fleet: Fleet,
) -> None:
    """An edge applies only its newest ASSIGN: agents of a set it skipped were never its,
    so no row of them comes back. Its CHECKPOINT of the newer epoch (even empty) frees
    them; before, the gateway withheld them from their new owner for good."""
    edges = wired(fleet)
    fleet.connect("a")
    a = Edge(edges, "a")
    fleet.connect("b")
    b = Edge(edges, "b")
    assert b.last_set().agent_ids.size == 0  # withheld: a was sent them
    epoch = a.last_set().epoch
    none = np.empty(0, dtype=np.uint32)
    assert edges.checkpoint("a", rows(none, 3, 0.0, epoch - 1)) is None  # older: not yet
    assert b.last_set().agent_ids.size == 0
    assert edges.checkpoint("a", rows(none, 3, 0.0, epoch)) is None  # a applied `epoch`
    assert b.last_set().agent_ids.size > 0
    assert sum(edges.holders().values()) == AGENTS


def test_a_drain_moves_at_most_max_moves_agents_at_a_time_each_round_at_a_new_epoch(
    fleet: Fleet,
) -> None:
    """A drain gave every agent away in one ASSIGN, whatever their number. Now the
    giving edge keeps stepping all but ``max_moves`` of them until rows come back."""
    edges = wired(fleet, max_moves=40)
    fleet.connect("a", "b")
    a, b = Edge(edges, "a"), Edge(edges, "b")
    held_a, held_b = a.last_set().agent_ids, b.last_set().agent_ids
    assert held_b.size > 3 * 40
    fleet.ask("edges.drain", edge_id="b")
    rounds, given, epochs = 0, np.empty(0, np.uint32), list[int]()
    while np.setdiff1d(held_b, given).size and rounds < 10:
        rounds += 1
        now = b.last_set()
        epochs.append(now.epoch)
        gone = np.setdiff1d(held_b, now.agent_ids)
        released = np.setdiff1d(gone, given)
        assert 0 < released.size <= 40  # one bounded round on its way
        assert edges.moving() == released.size
        assert not np.intersect1d(a.last_set().agent_ids, now.agent_ids).size
        assert not np.isin(released, a.last_set().agent_ids).any()  # not before their rows
        if rounds == 2:  # b's periodic checkpoint of the epoch before: no hand-back
            assert edges.checkpoint("b", rows(now.agent_ids, 10 * rounds, 0.0, epochs[-2])) is None
            assert not np.isin(released, a.last_set().agent_ids).any()
        assert edges.checkpoint("b", rows(released, 10 * rounds + 5, rounds, now.epoch)) is None
        came = a.last_set()
        assert np.isin(released, came.agent_ids).all()
        at = np.isin(came.agent_ids, released)
        assert (came.ticks[at] == 10 * rounds + 5).all()  # each with its own row
        assert (came.state[at] == rounds).all()
        given = np.union1d(given, released)
    assert rounds == -(-held_b.size // 40)
    assert epochs == sorted(set(epochs))  # every round at a new epoch
    assert np.array_equal(a.last_set().agent_ids, np.union1d(held_a, held_b))
    assert edges.holders() == {"a": AGENTS, "b": 0}
    assert edges.moving() == 0


class PlacedEdge:
    """An edge's real ``PlacedAgents`` fed with the ASSIGN frames the gateway sends it;
    its table outlives its sessions, as a real edge process's does."""

    def __init__(self) -> None:
        self.placed = PlacedAgents(
            AgentTable.create(count=0, obs_dim=2, state_dim=2, act_dim=2),
            None,
            slot_of=lambda name: 0,
            checkpoint_interval=0,
        )

    def connect(self, edges: PlacementEdges, name: str) -> None:
        """A new session: apply each set that comes and give back what it drops, as the
        edge does between ticks, until no new set comes."""
        edges.attach(name, self._receive, max_rows=128)
        for _ in range(5):
            if self.placed.apply() is None:
                return
            released, self.placed.released = self.placed.released, []
            for frame in released:
                assert edges.checkpoint(name, frame) is None

    def _receive(self, frame: Frame) -> None:
        if isinstance(frame, Assign):
            self.placed.receive(frame)

    def step(self, ticks: int) -> None:
        for tick in range(ticks):
            self.placed.apply()
            self.placed.stepped(tick)

    def ticks_of(self) -> dict[int, int]:
        table = self.placed.table
        return dict(zip(table.ids.tolist(), self.placed.ticks.tolist(), strict=True))


def test_an_edge_back_from_a_failure_takes_the_rows_of_agents_stepped_elsewhere_meanwhile(
    fleet: Fleet,
) -> None:
    """Edge a holds agents, vanishes and is DOWN; c runs them on and parks them (drained,
    no other edge). When a comes back its table still holds its own rows of them, far
    behind: it kept those and stepped ticks c had stepped (the ASSIGN's rows were only
    for agents new to it)."""
    edges = wired(fleet, lease_ticks=50)
    fleet.connect("a", "c")
    a = PlacedEdge()
    a.connect(edges, "a")
    c = Edge(edges, "c")
    a.step(5)
    mine = np.array(sorted(a.ticks_of()), dtype=np.uint32)
    fleet.live.discard("a")
    edges.detach("a", a._receive)
    fleet.now += 10.0  # a is DOWN: c runs everything
    fleet.service.refresh()
    taken = c.last_set()
    assert np.isin(mine, taken.agent_ids).all()
    assert (taken.ticks[np.isin(taken.agent_ids, mine)] == 50).all()  # a's lease skipped
    everything = taken.agent_ids
    assert edges.checkpoint("c", rows(everything, 100, 7.0, taken.epoch)) is None
    fleet.ask("edges.drain", edge_id="c")  # nobody else: c gives every row back
    assert c.last_set().agent_ids.size == 0
    assert edges.checkpoint("c", rows(everything, 101, 8.0, c.last_set().epoch)) is None
    fleet.connect("a")
    a.connect(edges, "a")
    back = a.ticks_of()
    assert set(back) == set(everything.tolist())
    assert all(back[int(agent)] == 101 for agent in mine)  # c's tick, not a's old 5
    state = a.placed.table.state[np.isin(a.placed.table.ids, mine)]
    assert (state == 8.0).all()


def test_an_edge_back_after_a_short_disconnect_keeps_its_own_rows(fleet: Fleet) -> None:
    """Nobody else ran its agents: its rows are the newest there are, so neither the
    gateway's lease skip nor a checkpoint replaces them."""
    edges = wired(fleet, lease_ticks=50)
    fleet.connect("a", "c")
    a = PlacedEdge()
    a.connect(edges, "a")
    a.step(5)
    before = a.ticks_of()
    mine = np.array(sorted(before), dtype=np.uint32)
    a.placed.table.state[:] = 3.0
    assert edges.checkpoint("a", rows(mine, 2, 1.0, a.placed.epoch or 0)) is None
    edges.detach("a", a._receive)  # back before --edge-timeout: nothing moved
    a.connect(edges, "a")
    assert a.ticks_of() == before
    assert (a.placed.table.state == 3.0).all()
