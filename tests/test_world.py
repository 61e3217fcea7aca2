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


def stepped(
    world: FlockingWorld, table: AgentTable, actions: np.ndarray, ticks: int, dt: float = 0.1
) -> None:
    for _ in range(ticks):
        world.sense(table)
        world.apply(actions, dt)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_actions_never_reach_positions_or_other_agents(bad):
    # as ACTIONS frames from a gateway could carry them
    world, table = make(count=400, seed=6, size=20.0)
    clean, clean_table = make(count=400, seed=6, size=20.0)
    actions = np.full((400, 2), 0.25, np.float32)
    expected = actions.copy()
    actions[7] = [bad, 0.5]
    expected[7] = 0.0  # what the world makes of a non-finite action: no acceleration
    stepped(world, table, actions, 6)
    stepped(clean, clean_table, expected, 6)
    assert world.nonfinite_repairs == 6
    assert np.array_equal(world.positions, clean.positions)
    assert np.array_equal(world.velocities, clean.velocities)
    assert np.array_equal(table.observations, clean_table.observations)
    assert np.isfinite(table.observations).all()


def test_a_velocity_that_overflows_is_stopped():
    world, table = make(count=50, seed=6, size=20.0)
    actions = np.zeros((50, 2), np.float32)
    actions[4] = [3.0e38, 3.0e38]  # finite, but 10 s of it overflows float32
    stepped(world, table, actions, 1, dt=10.0)
    assert world.nonfinite_repairs == 1
    assert not world.velocities[4].any()
    assert np.isfinite(world.positions).all()
    world.sense(table)
    assert np.isfinite(table.observations).all()


def test_non_finite_positions_are_repaired_before_they_poison_a_cell():
    world, table = make(count=400, seed=8, size=20.0)
    world.positions[3] = [np.nan, 1.0]
    world.velocities[9] = [np.inf, 0.0]
    world.sense(table)
    assert world.nonfinite_repairs == 2
    assert np.isfinite(table.observations).all()
    assert np.isfinite(table.rewards).all()
    assert (world.velocities[[3, 9]] == 0).all()


class ReferenceWorld(FlockingWorld):
    """The world as it was before the grid-cell avoidance, the conditional wrap and the
    per-column cell means: every agent measured against every obstacle, positions
    wrapped with ``np.mod``, the means and cells computed on (n, 2) arrays."""

    def cell_of(self, positions: Any) -> Any:
        side = self.cells_per_side
        cells = (positions / self.cell_width).astype(np.intp)
        np.clip(cells, 0, side - 1, out=cells)
        return cells[:, 0] * side + cells[:, 1]

    def sense(self, table: AgentTable) -> None:
        self._repair_state()
        p, v = self.positions, self.velocities
        obs = table.observations
        ncells = self.cells_per_side**2
        cell = self.cell_of(p)
        members = np.bincount(cell, minlength=ncells).astype(np.float64)
        np.maximum(members, 1.0, out=members)
        for k in range(2):
            mean_p = np.bincount(cell, weights=p[:, k], minlength=ncells) / members
            mean_v = np.bincount(cell, weights=v[:, k], minlength=ncells) / members
            obs[:, k] = v[:, k]
            obs[:, 2 + k] = mean_p[cell]
            obs[:, 2 + k] -= p[:, k]
            obs[:, 4 + k] = mean_v[cell]
        avoid, collided = self._full_avoidance(p, cell)
        obs[:, 6:8] = avoid
        dot = np.einsum("ij,ij->i", v, obs[:, 4:6])
        table.rewards[:] = self.alignment_reward * dot / (self.max_speed * self.max_speed)
        table.rewards[collided] -= self.collision_penalty

    def _full_avoidance(self, p: Any, cell: Any) -> Any:
        n = p.shape[0]
        avoid = np.zeros((n, 2), dtype=np.float32)
        centers, radii = self.obstacle_centers, self.obstacle_radii
        if centers.shape[0] == 0:
            return avoid, np.zeros(n, dtype=np.bool_)
        px, py = np.ascontiguousarray(p[:, 0]), np.ascontiguousarray(p[:, 1])
        best_gap = np.full(n, np.inf, dtype=np.float32)
        best = np.zeros(n, dtype=np.intp)
        for j in range(centers.shape[0]):
            dx, dy = px - centers[j, 0], py - centers[j, 1]
            gap = np.sqrt(dx * dx + dy * dy)
            gap -= radii[j]
            closer = gap < best_gap
            best_gap = np.where(closer, gap, best_gap)
            best = np.where(closer, j, best)
        dx, dy = px - centers[best, 0], py - centers[best, 1]
        d2 = dx * dx + dy * dy
        rows = np.flatnonzero((best_gap < self.avoid_radii[best] - radii[best]) & (d2 > 0))
        inv = np.float32(1.0) / d2[rows]
        avoid[rows, 0] = dx[rows] * inv
        avoid[rows, 1] = dy[rows] * inv
        return avoid, best_gap < 0

    def apply(self, actions: Any, dt: float = 0.1) -> None:
        if self.walls != "wrap":
            super().apply(actions, dt)
            return
        finite = np.logical_and.reduce(np.isfinite(actions), axis=1)
        actions = np.where(finite[:, None], actions, np.float32(0.0))
        step = np.float32(dt)
        v, p = self.velocities, self.positions
        v += actions * step
        speed2 = np.einsum("ij,ij->i", v, v)
        fast = speed2 > self.max_speed * self.max_speed
        if np.any(fast):
            v[fast] *= (self.max_speed / np.sqrt(speed2[fast]))[:, None]
        p += v * step
        np.mod(p, self.size, out=p)
        p[p >= self.size] = 0.0


def table_for(count: int) -> AgentTable:
    return AgentTable.create(count=count, obs_dim=OBSERVATION_DIM, state_dim=2, act_dim=ACTION_DIM)


@pytest.mark.parametrize(
    ("seed", "count", "walls", "obstacles"),
    [(0, 20_000, "wrap", 6), (5, 3_000, "reflect", 6), (9, 5_000, "wrap", 20), (2, 500, "wrap", 0)],
)
def test_the_same_seed_gives_the_same_bits_as_the_full_computation(
    seed: int, count: int, walls: Any, obstacles: int
) -> None:
    """Avoidance only for agents in cells near an obstacle and the conditional wrap are
    optimisations: every observation, reward, position and velocity is the same bits
    as the full computation's, tick after tick, whatever the actions."""
    world = FlockingWorld(count, seed=seed, walls=walls, obstacle_count=obstacles)
    reference = ReferenceWorld(count, seed=seed, walls=walls, obstacle_count=obstacles)
    table, expected = table_for(count), table_for(count)
    rng = np.random.default_rng(seed)
    for tick in range(60):
        world.sense(table)
        reference.sense(expected)
        assert np.array_equal(table.observations, expected.observations), tick
        assert np.array_equal(table.rewards, expected.rewards), tick
        actions = (rng.standard_normal((count, 2)) * 4).astype(np.float32)
        world.apply(actions.copy())
        reference.apply(actions.copy())
        assert np.array_equal(world.positions, reference.positions), tick
        assert np.array_equal(world.velocities, reference.velocities), tick
    assert world.near_obstacle.any() == (obstacles > 0)


def test_the_wrap_gives_what_np_mod_gives_at_the_edges() -> None:
    from edgeswarm.edge.world import _wrap

    size = np.float32(100.0)
    tiny = np.float32(1e-6)
    values = np.array(
        [-tiny, -0.0, 0.0, -0.2, 99.99999, 100.0, 100.2, 199.9, -99.9, -150.0, 250.5, 1e9, 50.0],
        dtype=np.float32,
    ).reshape(-1, 1)
    expected = np.mod(values, size)
    expected[expected >= size] = 0.0
    wrapped = values.copy()
    _wrap(wrapped, size)
    assert np.array_equal(wrapped, expected)
    assert ((wrapped >= 0) & (wrapped < size)).all()


def test_agents_outside_the_near_cells_are_beyond_every_avoid_radius() -> None:
    world = FlockingWorld(50_000, seed=4, obstacle_count=12)
    p = world.positions.astype(np.float64)
    far = ~world.near_obstacle[world.cell_of(world.positions)]
    for centre, reach in zip(world.obstacle_centers, world.avoid_radii, strict=True):
        distance = np.hypot(p[far, 0] - centre[0], p[far, 1] - centre[1])
        assert (distance >= reach).all()
    assert 0 < far.mean() < 1
