import numpy as np
import pytest

from edgeswarm.edge import AgentTable


def test_create_columns_have_documented_dtypes_and_shapes():
    table = AgentTable.create(count=5, obs_dim=8, state_dim=2, act_dim=3, first_id=100)
    assert table.ids.dtype == np.uint32
    assert table.ids.tolist() == [100, 101, 102, 103, 104]
    assert table.observations.shape == (5, 8)
    assert table.observations.dtype == np.float32
    assert table.rewards.shape == (5,)
    assert table.rewards.dtype == np.float32
    assert table.state.shape == (5, 2)
    assert table.actions.shape == (5, 3)
    assert table.policy.dtype == np.uint16
    assert (table.policy == 0).all()
    assert (table.count, table.obs_dim, table.state_dim, table.act_dim) == (5, 8, 2, 3)


def test_nbytes_sums_all_columns():
    table = AgentTable.create(count=10, obs_dim=8, state_dim=2, act_dim=2)
    # ids 4 + obs 32 + reward 4 + state 8 + actions 8 + policy 2 bytes per agent
    assert table.nbytes == 10 * (4 + 32 + 4 + 8 + 8 + 2 + 1)


def test_constructor_rejects_mismatched_columns():
    good = AgentTable.create(count=3, obs_dim=4, state_dim=1, act_dim=2)
    with pytest.raises(ValueError, match="rewards"):
        AgentTable(
            ids=good.ids,
            observations=good.observations,
            rewards=np.zeros(4, np.float32),
            state=good.state,
            actions=good.actions,
            policy=good.policy,
        )
    with pytest.raises(ValueError, match="observations must have dtype float32"):
        AgentTable(
            ids=good.ids,
            observations=good.observations.astype(np.float64),
            rewards=good.rewards,
            state=good.state,
            actions=good.actions,
            policy=good.policy,
        )


def test_groups_of_sorted_table_are_zero_copy_slices():
    table = AgentTable.create(count=7, obs_dim=2, state_dim=0, act_dim=1)
    table.policy[:] = [0, 0, 0, 2, 2, 5, 5]
    groups = table.groups()
    assert list(groups) == [0, 2, 5]
    assert groups[0] == slice(0, 3)
    assert groups[2] == slice(3, 5)
    assert groups[5] == slice(5, 7)
    view = table.observations[groups[2]]
    assert np.shares_memory(view, table.observations)


def test_groups_of_unsorted_table_cover_every_row_once():
    rng = np.random.default_rng(3)
    table = AgentTable.create(count=50, obs_dim=1, state_dim=0, act_dim=1)
    table.policy[:] = rng.integers(0, 4, 50)
    table.policy[10:14] = 9  # a contiguous group inside an unsorted table
    groups = table.groups()
    seen = np.zeros(50, dtype=int)
    for index, rows in groups.items():
        assert (table.policy[rows] == index).all()
        seen[rows] += 1
    assert (seen == 1).all()
    assert groups[9] == slice(10, 14)


def test_sort_by_policy_makes_every_group_a_slice_and_keeps_rows_together():
    table = AgentTable.create(count=6, obs_dim=1, state_dim=0, act_dim=1)
    table.policy[:] = [1, 0, 1, 0, 2, 0]
    table.observations[:, 0] = table.ids  # tag each row with its id
    order = table.sort_by_policy()
    assert order.tolist() == [1, 3, 5, 0, 2, 4]
    assert table.policy.tolist() == [0, 0, 0, 1, 1, 2]
    assert (table.observations[:, 0] == table.ids).all()
    assert all(isinstance(rows, slice) for rows in table.groups().values())


def test_empty_table_has_no_groups():
    assert AgentTable.create(count=0, obs_dim=8, state_dim=2, act_dim=2).groups() == {}
