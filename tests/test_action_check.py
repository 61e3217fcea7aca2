"""The action check of a policy step: finite exactly when every action is, at any size."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from edgeswarm.edge.policy.actions import TILE_ROWS, ActionCheck
from edgeswarm.edge.policy.errors import PolicyActionBoundsError, PolicyNonFiniteActionError

BAD = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("n", [1, 7, 10_000])
@pytest.mark.parametrize("bad", BAD, ids=["nan", "inf", "-inf"])
def test_one_non_finite_action_anywhere_is_refused(n: int, bad: float) -> None:
    check = ActionCheck(2, None)
    rng = np.random.default_rng(n)
    for row, column in ((0, 0), (n - 1, 1), (n // 2, 0)):
        actions = rng.normal(size=(n, 2)).astype(np.float32)
        actions[row, column] = bad
        with pytest.raises(PolicyNonFiniteActionError, match=f"first: row {row}"):
            check.check(actions, policy="p")


def test_huge_finite_actions_pass_without_bounds() -> None:
    check = ActionCheck(2, None)
    actions = np.full((100, 2), 3.0e38, np.float32)
    actions[::2] *= -1
    check.check(actions, policy="p")  # no error
    check.check(np.zeros((0, 2), np.float32), policy="p")  # an empty group too


def test_bounds_refuse_finite_values_outside_and_nan() -> None:
    check = ActionCheck(2, ((-1.0, 1.0), (0.0, 2.0)))
    check.check(np.array([[1.0, 2.0], [-1.0, 0.0]], np.float32), policy="p")
    with pytest.raises(PolicyActionBoundsError, match="row 1 column 1"):
        check.check(np.array([[0.0, 1.0], [0.0, 2.5]], np.float32), policy="p")
    with pytest.raises(PolicyNonFiniteActionError):
        check.check(np.array([[np.nan, 1.0]], np.float32), policy="p")


@pytest.mark.parametrize("n", [1, TILE_ROWS - 1, TILE_ROWS, 2 * TILE_ROWS + 5])
def test_per_column_bounds_hold_in_every_tile_of_rows(n: int) -> None:
    """The bounds are compared a tile of rows at a time: each column against its own
    bounds, in the first, a middle and the last (partial) tile alike."""
    check = ActionCheck(2, ((-1.0, 1.0), (-2.0, 2.0)))
    rng = np.random.default_rng(n)
    actions = np.column_stack([rng.uniform(-1, 1, n), rng.uniform(-2, 2, n)]).astype(np.float32)
    actions[0] = (1.0, -2.0)  # on the bounds: inside
    actions[-1, 1] = 1.9  # past column 0's bounds, inside column 1's
    check.check(actions, policy="p")
    for row in sorted({0, n // 2, TILE_ROWS - 1, TILE_ROWS, n - 1} & set(range(n))):
        outside = actions.copy()
        outside[row, 0] = 1.5
        with pytest.raises(PolicyActionBoundsError, match=f"row {row} column 0"):
            check.check(outside, policy="p")
        outside = actions.copy()
        outside[row, 1] = -2.01
        with pytest.raises(PolicyActionBoundsError, match=f"row {row} column 1"):
            check.check(outside, policy="p")
        nan = actions.copy()
        nan[row, 1] = np.nan
        with pytest.raises(PolicyNonFiniteActionError, match=f"first: row {row}"):
            check.check(nan, policy="p")


def test_a_small_policy_keeps_small_bounds_buffers() -> None:
    """The tiled bounds and scratch grow with the blocks checked: a policy of ten agents
    holds ten rows of them (on main: 16 384 rows, ~330 KB at two columns, per policy)."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        check = ActionCheck(2, ((-1.0, 1.0), (-2.0, 2.0)))
        check.check(np.zeros((10, 2), np.float32), policy="p")
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 8_192, f"{held} bytes held for a ten-agent policy"


def test_bounds_buffers_grown_for_a_bigger_block_check_smaller_ones_after() -> None:
    """A check that grew for a big block still checks a small one (and the big one) right."""
    check = ActionCheck(2, ((-1.0, 1.0), (-2.0, 2.0)))
    for n in (3, TILE_ROWS + 3, 5, 2):
        actions = np.zeros((n, 2), np.float32)
        check.check(actions, policy="p")
        actions[n - 1, 1] = 2.5
        with pytest.raises(PolicyActionBoundsError, match=f"row {n - 1} column 1"):
            check.check(actions, policy="p")
