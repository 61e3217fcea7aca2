"""A small deterministic 2-D flocking world.

Agents move in the square ``[0, size) x [0, size)`` among circular obstacles.
Each tick costs O(n): agents are binned into a uniform grid and every agent
sees the mean position and mean velocity of its own cell (computed with
``np.bincount``), never a neighbour list.

Observation layout (``OBSERVATION_DIM`` = 8 float32 per agent)::

    0 vx          own velocity
    1 vy
    2 cohesion_x  cell mean position minus own position
    3 cohesion_y
    4 align_x     cell mean velocity (own velocity included)
    5 align_y
    6 avoid_x     (p - c) / d**2 for the nearest obstacle (centre c, d = |p - c|)
    7 avoid_y     when d < obstacle radius + avoid margin, else 0

Actions are accelerations, ``ACTION_DIM`` = 2 float32 per agent.

The world keeps its own state finite whatever it is given: an agent whose
action is NaN or infinite (the Wasm host never lets a policy's through, but
actions also come from the gateway) gets no acceleration that tick, a velocity
that overflows is stopped, and :meth:`FlockingWorld.sense` repairs any
position or velocity that is not finite before binning, so one agent can never
make a grid cell's means (and so its neighbours' observations) non-finite.
Each repair is counted in :attr:`FlockingWorld.nonfinite_repairs`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable

OBSERVATION_DIM = 8
ACTION_DIM = 2

Walls = Literal["wrap", "reflect"]


DEFAULT_DT = 0.1
"""Tick length used by :meth:`FlockingWorld.apply` when none is given."""


class FlockingWorld:
    """Positions and velocities of ``count`` agents (row ``i`` = table row ``i``)."""

    OBS_DIM = OBSERVATION_DIM
    ACT_DIM = ACTION_DIM

    def __init__(
        self,
        count: int,
        *,
        seed: int = 0,
        size: float = 100.0,
        cell_size: float = 5.0,
        obstacle_count: int = 6,
        obstacle_radius: float = 4.0,
        avoid_margin: float = 4.0,
        max_speed: float = 2.0,
        walls: Walls = "wrap",
        collision_penalty: float = 1.0,
        alignment_reward: float = 0.01,
    ) -> None:
        if count < 0:
            raise ValueError("count must not be negative")
        if size <= 0 or cell_size <= 0 or max_speed <= 0:
            raise ValueError("size, cell_size and max_speed must be positive")
        if walls not in ("wrap", "reflect"):
            raise ValueError(f"walls must be 'wrap' or 'reflect', got {walls!r}")
        self.count = count
        self.size = np.float32(size)
        self.walls: Walls = walls
        self.max_speed = np.float32(max_speed)
        self.collision_penalty = np.float32(collision_penalty)
        self.alignment_reward = np.float32(alignment_reward)
        self.cells_per_side = max(1, int(np.ceil(size / cell_size)))
        self.cell_width = np.float32(size / self.cells_per_side)

        rng = np.random.default_rng(seed)
        self.positions: NDArray[np.float32] = rng.uniform(0.0, size, (count, 2)).astype(np.float32)
        heading = rng.uniform(0.0, 2.0 * np.pi, count)
        speed = rng.uniform(0.0, 0.5 * max_speed, count)
        self.velocities: NDArray[np.float32] = np.stack(
            [speed * np.cos(heading), speed * np.sin(heading)], axis=1
        ).astype(np.float32)
        self.obstacle_centers: NDArray[np.float32] = rng.uniform(
            0.1 * size, 0.9 * size, (obstacle_count, 2)
        ).astype(np.float32)
        self.obstacle_radii: NDArray[np.float32] = np.full(
            obstacle_count, obstacle_radius, dtype=np.float32
        )
        self.avoid_radii: NDArray[np.float32] = self.obstacle_radii + np.float32(avoid_margin)
        self.near_obstacle: NDArray[np.bool_] = self._cells_near_obstacles()
        """Per grid cell: whether any point of it is within an obstacle's avoid radius
        (only agents in such cells can be repelled or collide)."""
        self.nonfinite_repairs = 0
        """Agent rows whose action, velocity or position was not finite and was repaired."""

    def replace_rows(
        self,
        keep: NDArray[np.intp],
        ids: NDArray[np.uint32],
        order: NDArray[np.intp],
        *,
        seed: int = 0,
    ) -> None:
        """Follow :meth:`AgentTable.replace_rows`: kept agents keep their positions and
        velocities, the agents ``ids`` enter at rest at positions drawn from their ids
        (and ``seed``): the same agent enters at the same place on every edge."""
        spots = np.empty((ids.shape[0], 2), dtype=np.float32)
        for axis in range(2):  # a cheap integer hash of (id, seed, axis), vectorised
            h = (ids.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ np.uint64(
                (seed * 2 + axis + 1) * 0xBF58476D1CE4E5B9 % 2**64
            )
            h ^= h >> np.uint64(31)
            spots[:, axis] = (h % np.uint64(1 << 24)).astype(np.float32) / np.float32(1 << 24)
        entered = spots * self.size
        self.positions = np.ascontiguousarray(
            np.concatenate([self.positions[keep], entered])[order]
        )
        self.velocities = np.ascontiguousarray(
            np.concatenate([self.velocities[keep], np.zeros_like(entered)])[order]
        )
        self.count = int(self.positions.shape[0])

    def _repair_state(self) -> None:
        """Stop and re-centre agents whose position or velocity is not finite."""
        p, v = self.positions, self.velocities
        if np.isfinite(p).all() and np.isfinite(v).all():
            return
        sound = _finite_rows(p) & _finite_rows(v)
        self.nonfinite_repairs += int(np.count_nonzero(~sound))
        p[~sound] = self.size / np.float32(2.0)
        v[~sound] = 0.0

    def _cells_near_obstacles(self) -> NDArray[np.bool_]:
        """Cells whose square comes within an avoid radius of an obstacle's centre (a little
        generously, so float32 rounding of a distance never leaves an agent out)."""
        side = self.cells_per_side
        width = float(self.cell_width)
        lo = np.arange(side, dtype=np.float64) * width
        near = np.zeros((side, side), dtype=np.bool_)
        centers = self.obstacle_centers.astype(np.float64)
        for (cx, cy), reach in zip(centers, self.avoid_radii.astype(np.float64), strict=True):
            # distance from the centre to the nearest point of each cell, per axis
            gx = np.maximum(0.0, np.maximum(lo - cx, cx - (lo + width)))
            gy = np.maximum(0.0, np.maximum(lo - cy, cy - (lo + width)))
            near |= gx[:, None] ** 2 + gy[None, :] ** 2 <= (reach * (1 + 1e-4) + 1e-3) ** 2
        # cell_of clips positions outside the grid into its border cells
        return near.reshape(-1)

    def cell_of(self, positions: NDArray[np.float32]) -> NDArray[np.intp]:
        """Flat grid cell index of each position (per column: numpy is several times
        slower on (n, 2) arrays than on the two columns one after the other)."""
        side = self.cells_per_side
        row = (positions[:, 0] / self.cell_width).astype(np.intp)
        column = (positions[:, 1] / self.cell_width).astype(np.intp)
        np.clip(row, 0, side - 1, out=row)
        np.clip(column, 0, side - 1, out=column)
        row *= side
        row += column
        return row

    def sense(self, table: AgentTable) -> None:
        """Write every agent's observation and reward into ``table``."""
        if table.count != self.count:
            raise ValueError(f"table has {table.count} agents, world has {self.count}")
        if table.obs_dim != OBSERVATION_DIM:
            raise ValueError(f"table obs_dim must be {OBSERVATION_DIM}, got {table.obs_dim}")
        if self.count == 0:
            return
        self._repair_state()
        p, v = self.positions, self.velocities
        obs = table.observations
        ncells = self.cells_per_side**2
        cell = self.cell_of(p)
        members = np.bincount(cell, minlength=ncells).astype(np.float64)
        np.maximum(members, 1.0, out=members)
        # the observation columns are built as the rows of a (8, n) array and copied
        # into the table once: numpy writes a contiguous row ~10x faster than a column
        # of the (n, 8) table, and the one transposing copy costs less than three of those
        columns = np.empty((OBSERVATION_DIM, self.count), dtype=np.float32)
        for k in range(2):  # one column at a time, as in cell_of
            # the cell means rounded to float32 per cell, then gathered: the same values
            # as gathering the float64 means and rounding per agent
            mean_p = np.bincount(cell, weights=p[:, k], minlength=ncells) / members
            mean_v = np.bincount(cell, weights=v[:, k], minlength=ncells) / members
            columns[k] = v[:, k]
            np.subtract(mean_p.astype(np.float32).take(cell), p[:, k], out=columns[2 + k])
            mean_v.astype(np.float32).take(cell, out=columns[4 + k])

        collided = self._avoidance(p, cell, columns[6], columns[7])
        np.copyto(obs, columns.T)

        # Reward: small alignment term minus a collision penalty.
        align = obs[:, 4:6]
        dot = np.einsum("ij,ij->i", v, align)
        table.rewards[:] = self.alignment_reward * dot / (self.max_speed * self.max_speed)
        table.rewards[collided] -= self.collision_penalty

    def _avoidance(
        self,
        p: NDArray[np.float32],
        cell: NDArray[np.intp],
        avoid_x: NDArray[np.float32],
        avoid_y: NDArray[np.float32],
    ) -> NDArray[np.bool_]:
        """Repulsion from each agent's nearest obstacle (written into ``avoid_x`` and
        ``avoid_y``), and whether it is inside one.

        Only agents in a cell near an obstacle (:attr:`near_obstacle`) can be
        repelled or inside one; the others get zero, as the full computation would
        give them. For the agents near one: one pass per obstacle (a small
        constant) on contiguous 1-D arrays, which numpy does much faster than
        (n, k) ones. The same float32 operations per agent as over all agents,
        so the results are the same bits.
        """
        n = p.shape[0]
        avoid_x.fill(0.0)
        avoid_y.fill(0.0)
        collided = np.zeros(n, dtype=np.bool_)
        centers, radii = self.obstacle_centers, self.obstacle_radii
        if centers.shape[0] == 0:
            return collided
        near = np.flatnonzero(self.near_obstacle[cell])
        if near.size == 0:
            return collided
        px = p[near, 0]
        py = p[near, 1]
        m = near.size
        best_gap = np.full(m, np.inf, dtype=np.float32)
        best = np.zeros(m, dtype=np.intp)
        for j in range(centers.shape[0]):
            dx = px - centers[j, 0]
            dy = py - centers[j, 1]
            gap = np.sqrt(dx * dx + dy * dy)
            gap -= radii[j]
            closer = gap < best_gap
            # np.where selects branch-free; masked copies are far slower here.
            best_gap = np.where(closer, gap, best_gap)
            best = np.where(closer, j, best)
        dx = px - centers[best, 0]
        dy = py - centers[best, 1]
        d2 = dx * dx + dy * dy
        rows = np.flatnonzero((best_gap < self.avoid_radii[best] - radii[best]) & (d2 > 0))
        inv = np.float32(1.0) / d2[rows]
        avoid_x[near[rows]] = dx[rows] * inv
        avoid_y[near[rows]] = dy[rows] * inv
        collided[near] = best_gap < 0
        return collided

    def apply(self, actions: NDArray[np.float32], dt: float = DEFAULT_DT) -> None:
        """Integrate one tick: acceleration -> velocity (speed clamped) -> position."""
        if actions.shape != (self.count, ACTION_DIM):
            expected = (self.count, ACTION_DIM)
            raise ValueError(f"actions must have shape {expected}, got {actions.shape}")
        if self.count == 0:
            return
        if not np.isfinite(actions).all():
            finite_rows = _finite_rows(actions)
            self.nonfinite_repairs += int(np.count_nonzero(~finite_rows))
            actions = np.where(finite_rows[:, None], actions, np.float32(0.0))
        step = np.float32(dt)
        v, p = self.velocities, self.positions
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is repaired below
            v += actions * step
            speed2 = np.einsum("ij,ij->i", v, v)
            limit2 = self.max_speed * self.max_speed
            fast = speed2 > limit2
            if np.any(fast):
                v[fast] *= (self.max_speed / np.sqrt(speed2[fast]))[:, None]
        if not np.isfinite(v).all():  # |v| overflowed (a huge finite action): stop it
            moving = _finite_rows(v)
            self.nonfinite_repairs += int(np.count_nonzero(~moving))
            v[~moving] = 0.0
        p += v * step
        if self.walls == "wrap":
            _wrap(p, self.size)
        else:
            low = p < 0
            p[low] = -p[low]
            v[low] = -v[low]
            high = p > self.size
            p[high] = 2 * self.size - p[high]
            v[high] = -v[high]
            np.clip(p, 0.0, self.size, out=p)


def _wrap(p: NDArray[np.float32], size: np.float32) -> None:
    """``p`` into ``[0, size)`` in place, as ``np.mod(p, size)`` (then ``size`` -> 0) does,
    touching only the few values outside it (an agent moves far less than ``size`` a tick).

    For ``-size <= x < 0``, ``np.mod`` gives ``x + size`` (rounded like it); for ``size <=
    x < 2 size``, ``x - size`` (exact): the same bits. Anything farther out goes through
    ``np.mod`` itself.
    """
    flat = p.reshape(-1)
    low = np.flatnonzero(flat < 0)
    high = np.flatnonzero(flat >= size)
    if low.size:
        far = flat[low] < -size
        if far.any():
            flat[low[far]] = np.mod(flat[low[far]], size)
            low = low[~far]
        flat[low] += size
    if high.size:
        far = flat[high] >= 2 * size
        if far.any():
            flat[high[far]] = np.mod(flat[high[far]], size)
            high = high[~far]
        flat[high] -= size
    moved = np.concatenate((low, high))
    if moved.size:  # float32 rounding can land exactly on size
        flat[moved[flat[moved] >= size]] = 0.0


def _finite_rows(array: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Whether each row of a 2-D array is all finite."""
    rows: NDArray[np.bool_] = np.logical_and.reduce(np.isfinite(array), axis=1)
    return rows
