"""Hot swap and rollouts on one edge, with real Wasm modules: state kept, bad versions undone."""

from __future__ import annotations

import numpy as np
import pytest

from edgeswarm.agents_wasm import module_path
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.module_rollout import EdgeRollout
from edgeswarm.edge.policy import PolicySet, PolicySpec
from edgeswarm.edge.policy.errors import PolicyStateLayoutError
from edgeswarm.registry import Rollout, RolloutPhase, RolloutPlan, Stage
from tests.wasm_fixtures import policy_wat

AGENTS = 2000
TRAP_STEP = """(func (export "es_step") (param i32 i32 i32 i32) (result i32)
    unreachable)"""
COUNT_STEP = """(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32)
    (param $act i32) (result i32)
    (local $i i32) (local $p i32)
    ;; state[0] += 1 for every agent; actions zero
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $p (i32.add (local.get $state) (i32.shl (local.get $i) (i32.const 3))))
      (f32.store (local.get $p) (f32.add (f32.load (local.get $p)) (f32.const 1)))
      (f32.store (i32.add (local.get $act) (i32.shl (local.get $i) (i32.const 3))) (f32.const 0))
      (f32.store (i32.add (local.get $act) (i32.add (i32.shl (local.get $i) (i32.const 3))
        (i32.const 4))) (f32.const 0))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 0))"""


def spec(module: bytes, name: str) -> PolicySpec:
    return PolicySpec(module, name=name)


@pytest.fixture
def table() -> AgentTable:
    table = AgentTable.create(count=AGENTS, obs_dim=8, state_dim=2, act_dim=2)
    rng = np.random.default_rng(7)
    table.observations[:] = rng.uniform(-1, 1, table.observations.shape).astype(np.float32)
    return table


def counting(name: str) -> bytes:
    """A policy that counts its own steps in state[0]: a state any swap must keep."""
    return policy_wat(COUNT_STEP, name=name)


def test_hot_swap_keeps_every_agents_state(table: AgentTable) -> None:
    with PolicySet([spec(counting("v1"), "counter-v1")]) as policies:
        for _ in range(3):
            policies.step(table)
        assert np.all(table.state[:, 0] == 3)
        policies.swap(0, spec(counting("v2"), "counter-v2"))
        assert policies.name_of(0) == "counter-v2"
        for _ in range(2):
            policies.step(table)
        assert np.all(table.state[:, 0] == 5)  # v2 carried on from v1's state


def test_hot_swap_to_another_state_layout_is_refused_and_nothing_changes(
    table: AgentTable,
) -> None:
    stateless = module_path("hostile_trap").read_bytes()  # state_dim 0
    with PolicySet([spec(counting("v1"), "counter-v1")]) as policies:
        policies.step(table)
        before = policies[0]
        with pytest.raises(PolicyStateLayoutError, match="state layout"):
            policies.swap(0, spec(stateless, "stateless"))
        with pytest.raises(PolicyStateLayoutError):
            policies.add(spec(stateless, "stateless"), like=0)
        assert policies[0] is before
        assert len(policies) == 1
        policies.step(table)
        assert np.all(table.state[:, 0] == 2)


def plan(**changes: object) -> RolloutPlan:
    fields: dict[str, object] = {
        "name": "counter",
        "from_version": "1.0.0",
        "to_version": "2.0.0",
        "stages": (Stage(0.1, hold_ticks=3), Stage(1.0, hold_ticks=3)),
        "window_ticks": 3,
        "min_agent_ticks": 50,
    }
    fields.update(changes)
    return RolloutPlan(**fields)  # type: ignore[arg-type]


def test_rollout_v2_to_ten_percent_then_everyone_keeping_state_no_rollback(
    table: AgentTable,
) -> None:
    with PolicySet([spec(counting("v1"), "counter-v1")]) as policies:
        policies.step(table)
        edge = EdgeRollout(
            Rollout(plan()),
            table=table,
            policies=policies,
            old_slot=0,
            new_spec=spec(counting("v2"), "counter-v2"),
        )
        assert 0.07 * AGENTS < edge.agents_on_new < 0.13 * AGENTS
        ticks = 1
        while not edge.done:
            policies.step(table)
            ticks += 1
            edge.after_tick()
            assert ticks < 20
        assert edge.rollout.phase is RolloutPhase.COMPLETE
        assert [e.action for e in edge.events] == ["advance", "complete"]
        assert edge.agents_on_new == AGENTS
        assert np.all(table.state[:, 0] == ticks)  # no agent missed a tick or lost a count


def test_rollback_of_a_trapping_v3_within_the_bound_no_agent_loses_state(
    table: AgentTable,
) -> None:
    trapping = policy_wat(TRAP_STEP, name="v3")
    with PolicySet([spec(counting("v2"), "counter-v2")]) as policies:
        for _ in range(4):
            policies.step(table)
        rollout = Rollout(plan(from_version="2.0.0", to_version="3.0.0", min_agent_ticks=10**6))
        edge = EdgeRollout(
            rollout, table=table, policies=policies, old_slot=0, new_spec=spec(trapping, "v3")
        )
        moved = table.policy == edge.new_slot
        assert moved.any()
        ticks = 0
        while not edge.done:
            state_before = table.state.copy()
            policies.step(table)
            ticks += 1
            # the trapping agents' state is left as it was; the others count on
            assert np.array_equal(table.state[moved], state_before[moved])
            edge.after_tick()
            assert ticks <= rollout.plan.window_ticks
        assert [e.action for e in edge.events] == ["rollback"]
        assert edge.agents_on_new == 0
        policies.step(table)
        # every agent runs v2 again and carries on from its own count
        assert np.all(table.state[moved, 0] == 5)
        assert np.all(table.state[~moved, 0] == 5 + ticks)


def test_rollback_by_the_operator_restores_the_previous_version_everywhere(
    table: AgentTable,
) -> None:
    with PolicySet([spec(counting("v1"), "counter-v1")]) as policies:
        edge = EdgeRollout(
            Rollout(plan(stages=(Stage(1.0, hold_ticks=100),))),
            table=table,
            policies=policies,
            old_slot=0,
            new_spec=spec(counting("v2"), "counter-v2"),
        )
        assert edge.agents_on_new == AGENTS
        policies.step(table)
        edge.rollback()
        assert edge.agents_on_new == 0
        policies.step(table)
        assert np.all(table.state[:, 0] == 2)
