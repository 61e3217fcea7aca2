"""One tick's OBS_BATCH builders: a fixed range, or (placement) grouped by each agent's tick."""

from __future__ import annotations

import numpy as np

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.observation_batches import observation_batches


def test_without_agent_ticks_every_batch_is_at_the_edge_tick() -> None:
    table = AgentTable.create(count=10, obs_dim=2, state_dim=2, act_dim=2, first_id=5)
    batches = [at(seq) for seq, at in enumerate(observation_batches(table, 7, 4), 1)]
    assert [b.count for b in batches] == [4, 4, 2]
    assert {b.tick for b in batches} == {7}
    assert np.concatenate([b.agent_ids for b in batches]).tolist() == list(range(5, 15))


def test_agent_ticks_split_batches_so_each_carries_its_agents_tick() -> None:
    table = AgentTable.create(count=9, obs_dim=2, state_dim=2, act_dim=2, first_id=0)
    table.observations[:, 0] = np.arange(9)
    ticks = np.array([5, 9, 5, 9, 9, 5, 2, 9, 9], dtype=np.uint64)
    batches = [at(seq) for seq, at in enumerate(observation_batches(table, 100, 3, ticks), 1)]
    pairs = {(int(a), b.tick) for b in batches for a in b.agent_ids}
    assert pairs == {(i, int(t)) for i, t in enumerate(ticks)}  # every row once, at its tick
    assert all(b.count <= 3 for b in batches)
    for b in batches:  # each row's observation travels with its id
        assert b.observations[:, 0].tolist() == b.agent_ids.astype(float).tolist()
