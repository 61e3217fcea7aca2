"""The boids policy in plain Python: the numpy reference and the actor baseline.

The same policy is compiled to WebAssembly in
``edgeswarm/agents_wasm/src/boids.wat``; the constants below are the one
source of truth and the WAT exports the values it bakes in (globals
``boids_cohesion_weight`` etc.) so tests can check they agree.

Per agent, with the observation layout of :mod:`edgeswarm.edge.world`::

    a = wc * cohesion + wa * (align - v) + wo * avoid        (componentwise)
    if a.a > max_accel**2:  a *= max_accel / sqrt(a.a)
    s = 0.5 * s + 0.5 * a                                   (state: 2 floats)
    action = s

:func:`boids_numpy` performs the float32 operations in the same order as the
Wasm, so the two agree bit for bit (tests allow ~1e-6 relative).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable

COHESION_WEIGHT = 0.05
ALIGNMENT_WEIGHT = 0.2
AVOIDANCE_WEIGHT = 4.0
MAX_ACCEL = 1.0
SMOOTHING = 0.5

BOIDS_OBS_DIM = 8
BOIDS_STATE_DIM = 2
BOIDS_ACT_DIM = 2

_WC = np.float32(COHESION_WEIGHT)
_WA = np.float32(ALIGNMENT_WEIGHT)
_WO = np.float32(AVOIDANCE_WEIGHT)
_MAX = np.float32(MAX_ACCEL)
_MAX2 = np.float32(MAX_ACCEL * MAX_ACCEL)
_HALF = np.float32(SMOOTHING)


def boids_numpy(
    obs: NDArray[np.float32], state: NDArray[np.float32], out_actions: NDArray[np.float32]
) -> None:
    """Step ``n`` agents: reads ``obs`` (n, 8), updates ``state`` (n, 2) in place,
    writes ``out_actions`` (n, 2). All float32."""
    v = obs[:, 0:2]
    cohesion = obs[:, 2:4]
    align = obs[:, 4:6]
    avoid = obs[:, 6:8]
    accel = _WC * cohesion + _WA * (align - v) + _WO * avoid
    mag2 = accel[:, 0] * accel[:, 0] + accel[:, 1] * accel[:, 1]
    over = mag2 > _MAX2
    if np.any(over):
        accel[over] *= (_MAX / np.sqrt(mag2[over]))[:, None]
    state *= _HALF
    state += _HALF * accel
    out_actions[...] = state


class BoidActor:
    """One agent as one Python object: the per-object baseline.

    Holds its smoothed acceleration as two Python floats.
    """

    __slots__ = ("sx", "sy")

    def __init__(self) -> None:
        self.sx = 0.0
        self.sy = 0.0

    def step(self, obs_row: Sequence[float]) -> tuple[float, float]:
        """One tick for this agent; returns its action ``(ax, ay)``."""
        vx, vy, cx, cy, alx, aly, ox, oy = obs_row
        ax = COHESION_WEIGHT * cx + ALIGNMENT_WEIGHT * (alx - vx) + AVOIDANCE_WEIGHT * ox
        ay = COHESION_WEIGHT * cy + ALIGNMENT_WEIGHT * (aly - vy) + AVOIDANCE_WEIGHT * oy
        mag2 = ax * ax + ay * ay
        if mag2 > MAX_ACCEL * MAX_ACCEL:
            scale = MAX_ACCEL / mag2**0.5
            ax *= scale
            ay *= scale
        self.sx = SMOOTHING * self.sx + SMOOTHING * ax
        self.sy = SMOOTHING * self.sy + SMOOTHING * ay
        return self.sx, self.sy


def run_actors(actors: Sequence[BoidActor], table: AgentTable) -> None:
    """Step every actor on its row of ``table.observations`` into ``table.actions``."""
    if len(actors) != table.count:
        raise ValueError(f"{len(actors)} actors for {table.count} agents")
    rows = table.observations.tolist()
    actions = [actor.step(row) for actor, row in zip(actors, rows, strict=True)]
    if actions:
        table.actions[:] = actions
