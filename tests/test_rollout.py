"""Rollouts without sockets: shares by agent hash, labels, stages, automatic rollback."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeswarm.registry import (
    Rollout,
    RolloutError,
    RolloutEvent,
    RolloutPhase,
    RolloutPlan,
    Stage,
    share_point,
)

AGENTS = range(20_000)


def plan(**changes: object) -> RolloutPlan:
    fields: dict[str, object] = {
        "name": "flocking",
        "from_version": "1.0.0",
        "to_version": "2.0.0",
        "stages": (Stage(0.1, hold_ticks=5), Stage(0.5, hold_ticks=5), Stage(1.0, hold_ticks=5)),
        "fault_threshold": 0.01,
        "window_ticks": 4,
        "min_agent_ticks": 100,
    }
    fields.update(changes)
    return RolloutPlan(**fields)  # type: ignore[arg-type]


def on_new(rollout: Rollout, labels: frozenset[str] = frozenset()) -> int:
    return sum(rollout.version_for(a, labels) == "2.0.0" for a in AGENTS)


def test_share_point_is_stable_and_uniform() -> None:
    points = [share_point(a) for a in AGENTS]
    assert points == [share_point(a) for a in AGENTS]
    assert all(0.0 <= p < 1.0 for p in points)
    below = sum(p < 0.1 for p in points)
    assert 0.09 * len(points) < below < 0.11 * len(points)


def test_rollout_to_ten_then_fifty_then_all_agents() -> None:
    rollout = Rollout(plan())
    assert 1_800 < on_new(rollout) < 2_200
    first_wave = {a for a in AGENTS if rollout.version_for(a) == "2.0.0"}
    events = [e for _ in range(5) for e in rollout.observe(agent_ticks=2000, faults=0)]
    assert [e.action for e in events] == ["advance"]
    assert 9_500 < on_new(rollout) < 10_500
    # shares only grow: every agent of the first wave stays on the new version
    assert all(rollout.version_for(a) == "2.0.0" for a in first_wave)
    events = [e for _ in range(10) for e in rollout.observe(agent_ticks=10_000, faults=0)]
    assert [e.action for e in events] == ["advance", "complete"]
    assert rollout.phase is RolloutPhase.COMPLETE
    assert on_new(rollout) == len(AGENTS)


def test_rollout_to_edges_by_label() -> None:
    rollout = Rollout(plan(labels=frozenset({"canary"}), stages=(Stage(1.0),)))
    assert on_new(rollout, frozenset({"canary", "eu"})) == len(AGENTS)
    assert on_new(rollout, frozenset({"eu"})) == 0


def test_rollback_of_a_faulty_version_within_the_window() -> None:
    rollout = Rollout(plan(min_agent_ticks=10**9))  # judged only once the window is full
    ticks = 0
    events: list[RolloutEvent] = []
    while not events:
        ticks += 1
        events = rollout.observe(agent_ticks=2000, faults=2000)  # every agent-tick traps
        assert ticks <= rollout.plan.window_ticks
    assert [e.action for e in events] == ["rollback"]
    assert rollout.phase is RolloutPhase.ROLLED_BACK
    assert on_new(rollout) == 0
    assert rollout.observe(agent_ticks=10, faults=10) == []  # over: reports change nothing


def test_rollback_as_soon_as_enough_evidence() -> None:
    rollout = Rollout(plan(min_agent_ticks=1000, window_ticks=50))
    assert rollout.observe(agent_ticks=500, faults=100) == []  # not enough agent-ticks yet
    events = rollout.observe(agent_ticks=500, faults=100)
    assert [e.action for e in events] == ["rollback"]
    assert "0.2" in events[0].detail


def test_faults_below_the_threshold_do_not_roll_back() -> None:
    rollout = Rollout(plan(fault_threshold=0.01))
    for _ in range(30):
        rollout.observe(agent_ticks=10_000, faults=50)  # 0.5 %
    assert rollout.phase is RolloutPhase.COMPLETE


def test_rollback_by_the_operator_restores_everyone() -> None:
    rollout = Rollout(plan(stages=(Stage(1.0, hold_ticks=100),)))
    assert on_new(rollout) == len(AGENTS)
    event = rollout.rollback()
    assert event.action == "rollback"
    assert on_new(rollout) == 0
    with pytest.raises(RolloutError):
        rollout.rollback()


@pytest.mark.parametrize(
    "changes",
    [
        {"stages": ()},
        {"stages": (Stage(0.5), Stage(0.2))},
        {"stages": (Stage(0.0),)},
        {"stages": (Stage(1.5),)},
        {"stages": (Stage(1.0, hold_ticks=-1),)},
        {"fault_threshold": -0.1},
        {"window_ticks": 0},
        {"to_version": "1.0.0"},
    ],
)
def test_invalid_plans_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(RolloutError):
        plan(**changes)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000)), min_size=1, max_size=60))
def test_rollback_bound_holds_for_any_reports(reports: list[tuple[int, int]]) -> None:
    """Whatever the reports, a rollout never runs a window of bad reports without rolling back."""
    p = plan()
    rollout = Rollout(p)
    window: list[tuple[int, int]] = []
    for agent_ticks, faults in reports:
        faults = min(faults, agent_ticks)
        window = [*window, (agent_ticks, faults)][-p.window_ticks :]
        rollout.observe(agent_ticks, faults)
        total = sum(a for a, _ in window)
        bad = total and sum(f for _, f in window) / total > p.fault_threshold
        if len(window) == p.window_ticks and bad and rollout.phase is not RolloutPhase.COMPLETE:
            assert rollout.phase is RolloutPhase.ROLLED_BACK
