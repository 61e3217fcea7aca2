"""The action check of a policy step: finite exactly when every action is, at any size."""

from __future__ import annotations

import numpy as np
import pytest

from edgeswarm.edge.policy.actions import ActionCheck
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
