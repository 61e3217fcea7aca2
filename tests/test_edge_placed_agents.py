"""The edge's assigned agents: ASSIGN parts joined, rows gained and lost between ticks."""

from __future__ import annotations

import numpy as np

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.placed_agents import AssignmentParts, PlacedAgents
from edgeswarm.edge.world import FlockingWorld
from edgeswarm.wire import Assign

SLOTS = {"boids": 0, "drift": 1}


def assign(
    ids: list[int], *, epoch: int = 1, part: int = 0, parts: int = 1, names: tuple[str, ...] = ()
) -> Assign:
    names = names or ("boids", "drift")
    return Assign(
        epoch=epoch,
        part=part,
        parts=parts,
        agent_ids=np.array(ids, dtype=np.uint32),
        policy=(np.array(ids) % len(names)).astype(np.uint16),
        ticks=np.array(ids, dtype=np.uint64) * 10,
        state=np.stack([np.array(ids, np.float32), -np.array(ids, np.float32)], axis=1),
        policy_names=names,
    )


def placed(interval: int = 3) -> PlacedAgents:
    table = AgentTable.create(count=0, obs_dim=8, state_dim=2, act_dim=2)
    return PlacedAgents(
        table, FlockingWorld(0), slot_of=SLOTS.get, checkpoint_interval=interval, seed=1
    )


def test_an_assignment_fills_an_empty_edge_from_the_rows_it_carries() -> None:
    agents = placed()
    agents.receive(assign([4, 5, 6, 7]))
    change = agents.apply()
    assert change is not None
    assert (change.added, change.dropped, change.epoch) == (4, 0, 1)
    table = agents.table
    assert sorted(table.ids.tolist()) == [4, 5, 6, 7]
    # policy groups are contiguous: slot 0 (even ids) then slot 1 (odd ids)
    assert table.policy.tolist() == [0, 0, 1, 1]
    assert isinstance(table.groups()[0], slice)
    assert isinstance(table.groups()[1], slice)
    row = {int(i): r for r, i in enumerate(table.ids)}
    for agent in (4, 5, 6, 7):
        assert table.state[row[agent]].tolist() == [agent, -agent]
        assert int(agents.ticks[row[agent]]) == agent * 10
    assert agents.world is not None
    assert agents.world.count == 4
    assert agents.apply() is None  # nothing new pending


def test_kept_agents_keep_their_rows_and_world_state_lost_ones_go() -> None:
    agents = placed()
    agents.receive(assign([1, 2, 3, 4]))
    agents.apply()
    table, world = agents.table, agents.world
    assert world is not None
    table.state[:] = 99.0  # stepped since: the edge's state, not the ASSIGN's
    agents.stepped(0)
    positions = {int(i): world.positions[r].copy() for r, i in enumerate(table.ids)}
    agents.receive(assign([2, 3, 8], epoch=2))
    change = agents.apply()
    assert change is not None
    assert (change.added, change.dropped, change.kept) == (1, 2, 2)
    row = {int(i): r for r, i in enumerate(table.ids)}
    assert sorted(row) == [2, 3, 8]
    for kept in (2, 3):
        assert table.state[row[kept]].tolist() == [99.0, 99.0]
        assert int(agents.ticks[row[kept]]) == kept * 10 + 1
        assert np.array_equal(world.positions[row[kept]], positions[kept])
    assert table.state[row[8]].tolist() == [8.0, -8.0]
    assert world.count == len(table) == 3
    world.sense(table)  # the world and the table agree on the rows


def test_parts_complete_an_epoch_only_together_and_old_epochs_are_ignored() -> None:
    parts = AssignmentParts()
    assert not parts.receive(assign([1, 2], epoch=5, part=1, parts=2))
    assert parts.take() is None
    assert parts.receive(assign([7, 9], epoch=5, part=0, parts=2, names=("drift",)))
    joined = parts.take()
    assert joined is not None
    assert joined.agent_ids.tolist() == [1, 2, 7, 9]
    names = joined.policy_names
    assert [names[p] for p in joined.policy] == ["drift", "boids", "drift", "drift"]
    assert not parts.receive(assign([3], epoch=4))  # superseded: ignored
    assert parts.take() is None


def test_unknown_policies_run_slot_zero_and_are_counted() -> None:
    agents = placed()
    agents.receive(assign([1, 2], names=("boids", "nowhere")))
    agents.apply()
    assert agents.table.policy.tolist() == [0, 0]
    assert agents.unknown_policies == 1


def test_checkpoints_come_every_interval_in_bounded_frames() -> None:
    agents = placed(interval=3)
    assert agents.due_checkpoints(0, 2) == []  # nothing assigned yet
    agents.receive(assign([1, 2, 3, 4, 5]))
    agents.apply()
    due = [agents.due_checkpoints(tick, 2) for tick in range(6)]
    assert [len(d) for d in due] == [0, 0, 3, 0, 0, 3]
    frames = due[2]
    assert [f.count for f in frames] == [2, 2, 1]
    ids = np.concatenate([f.agent_ids for f in frames])
    assert sorted(ids.tolist()) == [1, 2, 3, 4, 5]
    assert all(f.epoch == 1 and f.tick == 2 for f in frames)


def test_dropped_rows_are_given_back_at_the_epoch_that_dropped_them() -> None:
    agents = placed()
    agents.receive(assign([1, 2, 3]))
    agents.apply()
    agents.table.state[:] = 7.0
    agents.stepped(0)
    agents.receive(assign([3], epoch=4))
    agents.apply()
    applied, back = agents.released  # one per apply, also empty: "epoch applied"
    assert (applied.epoch, applied.count) == (1, 0)
    assert back.epoch == 4
    tick_of = dict(zip(back.agent_ids.tolist(), back.ticks.tolist(), strict=True))
    assert tick_of == {1: 11, 2: 21}  # the last tick each was stepped at
    assert back.state.tolist() == [[7.0, 7.0], [7.0, 7.0]]
