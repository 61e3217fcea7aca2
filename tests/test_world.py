from typing import Any

import numpy as np
import pytest

from edgeswarm.edge import AgentTable, FlockingWorld
from edgeswarm.edge.world import ACTION_DIM, OBSERVATION_DIM


def make(count: int = 500, **kwargs: Any) -> tuple[FlockingWorld, AgentTable]:
    world = FlockingWorld(count=count, **kwargs)
    table = AgentTable.create(count=count, obs_dim=OBSERVATION_DIM, state_dim=2, act_dim=ACTION_DIM)
    return world, table


def test_same_seed_same_trajectory_and_different_seed_differs():
    runs = []
    for seed in (1, 1, 2):
        world, table = make(seed=seed)
        for _ in range(5):
            world.sense(table)
            world.apply(table.observations[:, 2:4].copy(), 0.1)
        runs.append(world.positions.copy())
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_observation_columns_match_a_direct_per_cell_computation():
    world, table = make(count=300, seed=4, size=20.0, cell_size=5.0)
    world.sense(table)
    obs = table.observations
    assert obs.dtype == np.float32
    p, v = world.positions.astype(np.float64), world.velocities.astype(np.float64)
    cell = world.cell_of(world.positions)
    for i in (0, 17, 299):
        same = cell == cell[i]
        np.testing.assert_allclose(obs[i, 0:2], v[i], rtol=1e-6)
        np.testing.assert_allclose(obs[i, 2:4], p[same].mean(axis=0) - p[i], atol=1e-4)
        np.testing.assert_allclose(obs[i, 4:6], v[same].mean(axis=0), atol=1e-5)


def test_avoidance_points_away_from_nearest_obstacle_inside_radius_only():
    world, table = make(count=3, seed=0, obstacle_count=1, obstacle_radius=2.0, avoid_margin=3.0)
    center = world.obstacle_centers[0]
    world.positions[:] = center + np.array([[4.0, 0.0], [0.0, -1.0], [9.0, 0.0]], np.float32)
    world.sense(table)
    avoid = table.observations[:, 6:8]
    np.testing.assert_allclose(avoid[0], [4.0 / 16.0, 0.0], rtol=1e-5)  # (p - c) / d^2
    np.testing.assert_allclose(avoid[1], [0.0, -1.0], rtol=1e-5)
    assert (avoid[2] == 0).all()  # d = 9 > radius + margin = 5
    # inside the obstacle is penalised
    assert table.rewards[1] < -0.5
    assert table.rewards[0] > -0.5


def test_apply_clamps_speed_and_wraps_positions():
    world, _ = make(count=50, seed=5, max_speed=2.0, size=10.0)
    world.apply(np.full((50, 2), 100.0, np.float32), 1.0)
    speed = np.linalg.norm(world.velocities, axis=1)
    assert speed.max() <= 2.0 + 1e-5
    assert (world.positions >= 0).all()
    assert (world.positions < 10.0).all()


def test_reflecting_walls_keep_agents_inside_and_turn_them_around():
    world, _ = make(count=1, seed=0, walls="reflect", size=10.0, max_speed=5.0)
    world.positions[:] = [[9.5, 5.0]]
    world.velocities[:] = [[2.0, 0.0]]
    world.apply(np.zeros((1, 2), np.float32), 1.0)
    np.testing.assert_allclose(world.positions[0], [8.5, 5.0], rtol=1e-6)
    assert world.velocities[0, 0] == -2.0


def test_sense_rejects_wrong_table_shape():
    world, _ = make(count=10)
    with pytest.raises(ValueError, match="obs_dim"):
        world.sense(AgentTable.create(count=10, obs_dim=4, state_dim=0, act_dim=2))
