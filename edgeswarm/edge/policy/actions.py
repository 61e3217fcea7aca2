"""What a policy's actions must be before they leave the host: finite, and within bounds.

:class:`ActionCheck` validates one ``es_step``'s action block in one
vectorised pass, before anything is copied out of the module's memory: with
no declared bounds, ``np.isfinite(actions).all()``; with bounds
(descriptor ``act_bounds``), ``low <= actions <= high`` per column, which
NaN fails too. Only a failing block is looked at again, to say what is wrong:
NaN or infinity is :class:`~edgeswarm.edge.policy.errors.PolicyNonFiniteActionError`
(``nonfinite_action``), a finite value out of bounds
:class:`~edgeswarm.edge.policy.errors.PolicyActionBoundsError`
(``action_bounds``). The policy set then quarantines the policy and its agents
get the safe action, so no NaN or infinity ever reaches the agent table, the
world, the wire or another policy's agents.

Bounds are compared as float32 (each declared bound rounded to the nearest float32),
against copies of the bounds tiled to :data:`TILE_ROWS` rows: comparing an
``(n, 2)`` block with a ``(2,)`` row broadcasts into inner loops of two elements,
about 13 times slower (80 us for 10 000 agents against 6, more than the boids step).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.policy.errors import PolicyActionBoundsError, PolicyNonFiniteActionError

TILE_ROWS: Final = 16_384
"""Rows of actions compared in one pass against the tiled bounds."""


class ActionCheck:
    """Validates ``(n, act_dim)`` float32 action blocks of one policy."""

    def __init__(self, act_dim: int, bounds: tuple[tuple[float, float], ...] | None) -> None:
        if bounds is not None and len(bounds) != act_dim:
            raise ValueError(f"{len(bounds)} bounds for {act_dim} action columns")
        self.act_dim = act_dim
        self._finite: NDArray[np.bool_] = np.empty((0, act_dim), np.bool_)
        self.low: NDArray[np.float32] | None = None
        self.high: NDArray[np.float32] | None = None
        if bounds is not None:
            self.low = np.array([low for low, _ in bounds], np.float32)
            self.high = np.array([high for _, high in bounds], np.float32)
            self._tile(0)

    def _tile(self, rows: int) -> None:
        """Tiled bounds and scratch of ``rows`` rows: grown to the blocks checked (a policy
        of ten agents keeps ten rows, not ``TILE_ROWS``), never past ``TILE_ROWS``."""
        assert self.low is not None
        assert self.high is not None
        self._low_tile = np.tile(self.low, (rows, 1))
        self._high_tile = np.tile(self.high, (rows, 1))
        self._above = np.empty((rows, self.act_dim), np.bool_)
        self._below = np.empty((rows, self.act_dim), np.bool_)

    def check(self, actions: NDArray[np.float32], *, policy: str) -> None:
        """Raise if any action is non-finite or out of bounds; ``actions`` is not changed."""
        if self.low is None:
            n = actions.shape[0]
            if self._finite.shape[0] < n:  # a scratch buffer: no allocation per step
                self._finite = np.empty((n, self.act_dim), np.bool_)
            finite = np.isfinite(actions, out=self._finite[:n])
            if np.logical_and.reduce(finite, axis=None):  # .all() without its Python layer
                return
        elif self._within(actions):
            return
        self._explain(actions, policy)

    def _within(self, actions: NDArray[np.float32]) -> bool:
        """``low <= actions <= high`` everywhere (NaN is not), a tile of rows at a time."""
        if self._low_tile.shape[0] < min(actions.shape[0], TILE_ROWS):
            self._tile(min(actions.shape[0], TILE_ROWS))
        for start in range(0, actions.shape[0], TILE_ROWS):
            block = actions[start : start + TILE_ROWS]
            rows = block.shape[0]
            inside = np.greater_equal(block, self._low_tile[:rows], out=self._above[:rows])
            below = np.less_equal(block, self._high_tile[:rows], out=self._below[:rows])
            np.logical_and(inside, below, out=inside)
            if not np.logical_and.reduce(inside, axis=None):
                return False
        return True

    def _explain(self, actions: NDArray[np.float32], policy: str) -> None:
        finite = np.isfinite(actions)
        if not finite.all():
            rows = np.flatnonzero(~finite.all(axis=1))
            row = int(rows[0])
            raise PolicyNonFiniteActionError(
                f"es_step wrote non-finite actions for {rows.size} of {actions.shape[0]} "
                f"agents (first: row {row}, {actions[row].tolist()})",
                policy=policy,
            )
        assert self.low is not None
        assert self.high is not None
        outside = (actions < self.low) | (actions > self.high)
        rows = np.flatnonzero(outside.any(axis=1))
        row = int(rows[0])
        column = int(np.flatnonzero(outside[row])[0])
        raise PolicyActionBoundsError(
            f"es_step wrote actions outside act_bounds for {rows.size} of {actions.shape[0]} "
            f"agents (first: row {row} column {column} = {float(actions[row, column])!r}, "
            f"bounds [{float(self.low[column])!r}, {float(self.high[column])!r}])",
            policy=policy,
        )
