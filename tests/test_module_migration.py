"""Hot swap across a changed state layout (``es_migrate``, ABI.md "Hot swap and state
layout"), with real Wasm modules: the C example ``odometer_v1`` (one state f32, the
step count) and ``odometer_v2`` (two: the count and the count carried over from v1,
with ``es_migrate``), and WAT variants that lack ``es_migrate`` or whose ``es_migrate``
fails.

On one policy set (swap), and through module distribution on an edge (a rollout with
both versions side by side, its completion and its rollback) without sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edgeswarm.agents_wasm import module_path
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.module_link import ModuleLink
from edgeswarm.edge.policy import PolicySet, PolicySpec
from edgeswarm.edge.policy.errors import (
    PolicyLoadError,
    PolicyMigrationError,
    PolicyStateLayoutError,
)
from edgeswarm.edge.policy.wasm_host import WasmPolicy
from edgeswarm.identity import KeyPair
from edgeswarm.registry import AbiMismatchError, RolloutPlan, Stage
from edgeswarm.registry.abi_check import check_abi
from edgeswarm.registry.fetch import BlobCache
from edgeswarm.wire import FEATURE_MODULES
from tests.registry_fixtures import manifest_for
from tests.test_module_distribution import Edge, Fleet, fleet_of
from tests.test_module_distribution import plan as distribution_plan
from tests.test_module_rollout import COUNT_STEP
from tests.test_wire_state import ready
from tests.wasm_fixtures import policy_wat

AGENTS = 500
ODOMETER_V1 = module_path("odometer_v1").read_bytes()
ODOMETER_V2 = module_path("odometer_v2").read_bytes()
WIDE = {"name": "odometer", "state_dim": 2}
NO_MIGRATE = policy_wat(COUNT_STEP, descriptor=WIDE)
"""A v2 layout (state_dim 2) and no ``es_migrate``."""

MIGRATE_HEAD = """(func (export "es_migrate") (param $n i32) (param $old_dim i32)
    (param $old i32) (param $new i32) (result i32)
    ;; first scribble on the new block, so a host that kept it would show"""
FAILING_MIGRATES = {
    "trap": MIGRATE_HEAD + "\n    (f32.store (local.get $new) (f32.const 999)) unreachable)",
    "status": MIGRATE_HEAD + "\n    (f32.store (local.get $new) (f32.const 999)) (i32.const 7))",
    "nonfinite": MIGRATE_HEAD + "\n    (f32.store (local.get $new) (f32.const nan)) (i32.const 0))",
    "fuel": MIGRATE_HEAD + "\n    (loop $forever (br $forever)) (i32.const 0))",
}
"""``es_migrate`` bodies that must each refuse the swap."""
FAULT_OF = {"trap": "trap", "status": "abi", "nonfinite": "abi", "fuel": "fuel"}


def failing(how: str) -> bytes:
    return policy_wat(COUNT_STEP, descriptor=WIDE, extra=FAILING_MIGRATES[how])


@pytest.fixture
def table() -> AgentTable:
    table = AgentTable.create(count=AGENTS, obs_dim=8, state_dim=2, act_dim=2)
    table.state[:, 0] = np.arange(AGENTS, dtype=np.float32) % 37  # every agent its own count
    return table


def spec(blob: bytes, name: str) -> PolicySpec:
    return PolicySpec(blob, name=name)


# -- one policy set: swap ---------------------------------------------------------------


def test_hot_swap_across_a_state_layout_runs_es_migrate_over_every_agent(
    table: AgentTable,
) -> None:
    start = table.state[:, 0].copy()
    with PolicySet([spec(ODOMETER_V1, "odometer-v1")]) as policies:
        for _ in range(3):
            policies.step(table)
        v1_state = table.state[:, :1].copy()
        assert np.array_equal(v1_state[:, 0], start + 3)
        policies.swap(0, spec(ODOMETER_V2, "odometer-v2"), table=table)
        # what es_migrate computed from each agent's v1 state: [count, count]
        assert np.array_equal(table.state, np.hstack([v1_state, v1_state]))
        assert policies.state_dim_of(0) == 2
        for _ in range(2):
            policies.step(table)
    assert np.array_equal(table.state[:, 0], start + 5)  # the count went on
    assert np.array_equal(table.state[:, 1], start + 3)  # what v1 handed over
    assert np.array_equal(table.actions, np.stack([start + 5, -(start + 3)], axis=1))


def test_hot_swap_across_a_state_layout_without_es_migrate_is_refused_and_v1_runs_on(
    table: AgentTable,
) -> None:
    start = table.state.copy()
    with PolicySet([spec(ODOMETER_V1, "odometer-v1")]) as policies:
        before = policies[0]
        with pytest.raises(PolicyStateLayoutError, match="exports es_migrate") as refused:
            policies.swap(0, spec(NO_MIGRATE, "odometer-v2"), table=table)
        assert not isinstance(refused.value, PolicyMigrationError)
        assert refused.value.kind == "load"
        assert policies[0] is before
        assert np.array_equal(table.state, start)
        policies.step(table)
    assert np.array_equal(table.state[:, 0], start[:, 0] + 1)


def test_hot_swap_needs_the_table_to_migrate(table: AgentTable) -> None:
    with PolicySet([spec(ODOMETER_V1, "odometer-v1")]) as policies:
        with pytest.raises(PolicyStateLayoutError, match="state layout"):
            policies.swap(0, spec(ODOMETER_V2, "odometer-v2"))  # no agents to migrate given
        assert policies.state_dim_of(0) == 1


@pytest.mark.parametrize("how", sorted(FAILING_MIGRATES))
def test_es_migrate_that_fails_refuses_the_swap_and_leaves_every_state_untouched(
    table: AgentTable, how: str
) -> None:
    with PolicySet([spec(ODOMETER_V1, "odometer-v1")]) as policies:
        policies.step(table)
        before, state = policies[0], table.state.copy()
        with pytest.raises(PolicyMigrationError, match="es_migrate") as refused:
            policies.swap(0, spec(failing(how), "odometer-bad"), table=table)
        assert refused.value.cause == FAULT_OF[how]
        assert refused.value.kind == "load"
        assert "old version keeps running" in str(refused.value)
        assert policies[0] is before
        assert not policies.is_quarantined(0)
        assert np.array_equal(table.state, state)  # no half-migrated table
        with pytest.raises(PolicyMigrationError):
            policies.add(spec(failing(how), "odometer-bad"), like=0, table=table)
        assert len(policies) == 1
        assert np.array_equal(table.state, state)
        policies.step(table)
    assert np.array_equal(table.state[:, 0], state[:, 0] + 1)


def test_es_migrate_refuses_a_layout_it_does_not_know(table: AgentTable) -> None:
    stateless = policy_wat(descriptor={"name": "odometer", "state_dim": 0})
    with (
        PolicySet([spec(stateless, "odometer-v0")]) as policies,
        pytest.raises(PolicyMigrationError, match="returned status 1"),
    ):
        policies.swap(0, spec(ODOMETER_V2, "odometer-v2"), table=table)


def test_es_migrate_of_another_type_is_refused_at_load_and_at_publish() -> None:
    wrong = policy_wat(
        COUNT_STEP,
        descriptor=WIDE,
        extra='(func (export "es_migrate") (param i32) (result i32) (i32.const 0))',
    )
    with pytest.raises(PolicyLoadError, match="'es_migrate' has type func \\(i32\\) -> \\(i32\\)"):
        WasmPolicy(wrong, name="wrong")
    manifest = manifest_for(ODOMETER_V2, KeyPair.generate(), name="odometer")
    check_abi(manifest, ODOMETER_V2)  # the right type
    # the registry's static check (signing would refuse the blob already: it loads it)
    with pytest.raises(AbiMismatchError, match="'es_migrate' has the wrong signature"):
        check_abi(manifest, wrong)


# -- an edge: rollout side by side, completion, rollback ------------------------------------


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    modules = {
        "1.0.0": ODOMETER_V1,
        "2.0.0": ODOMETER_V2,
        "3.0.0": NO_MIGRATE,
        "4.0.0": failing("trap"),
    }
    with fleet_of(tmp_path, plan("0.0.0", "1.0.0"), modules) as fleet:
        yield fleet


def plan(from_version: str, to_version: str, **changes: object) -> RolloutPlan:
    """A rollout of ``odometer``: 20 %, then everyone, 3 reports each (unless changed)."""
    fields: dict[str, object] = {
        "name": "odometer",
        "stages": (Stage(0.2, hold_ticks=3), Stage(1.0, hold_ticks=3)),
        **changes,
    }
    return distribution_plan(from_version, to_version, **fields)


def odometer_edge(fleet: Fleet, tmp_path: Path) -> Edge:
    table = AgentTable.create(count=AGENTS, obs_dim=8, state_dim=2, act_dim=2)
    policies = PolicySet([spec(ODOMETER_V1, "odometer")])
    link = ModuleLink(table, policies, BlobCache(tmp_path / "edge" / "modules"), {"odometer": 0})
    session, gateway_side = ready((FEATURE_MODULES,), (FEATURE_MODULES,))
    edge = Edge("edge-a", table, policies, link, session, gateway_side)
    fleet.edges.append(edge)
    fleet.connect(edge)
    return edge


def versions(edge: Edge) -> dict[str, int]:
    return edge.link.versions().get("odometer", {})


def tick(fleet: Fleet, edge: Edge, carried: np.ndarray) -> None:
    """One tick of ``edge``; ``carried`` gets the v1 count of each agent that moves to
    v2 in it (what es_migrate must carry over)."""
    count, on_v2 = edge.table.state[:, 0].copy(), edge.policies.state_dim_of
    before = np.array([on_v2(int(slot)) == 2 for slot in edge.table.policy])
    edge.link.apply()
    after = np.array([on_v2(int(slot)) == 2 for slot in edge.table.policy])
    moved = after & ~before
    carried[moved] = count[moved]
    edge.tick()
    for report in edge.link.after_tick():
        edge.session.send(report)
    fleet.pump(edge)


def test_rollout_across_a_layout_migrates_each_agent_as_it_moves_count_continuous(
    fleet: Fleet, tmp_path: Path
) -> None:
    edge = odometer_edge(fleet, tmp_path)
    carried = np.full(AGENTS, -1.0, dtype=np.float32)
    for _ in range(3):
        tick(fleet, edge, carried)
    assert versions(edge) == {"1.0.0": AGENTS}
    fleet.store.start_rollout(plan("1.0.0", "2.0.0"), actor="ops")
    fleet.refresh()
    tick(fleet, edge, carried)
    first = versions(edge)["2.0.0"]
    assert 0.1 * AGENTS < first < 0.3 * AGENTS
    for _ in range(30):
        tick(fleet, edge, carried)
        if fleet.store.deployment("odometer").plan is None:  # type: ignore[union-attr]
            break
    tick(fleet, edge, carried)
    assert fleet.store.deployment("odometer").version == "2.0.0"  # type: ignore[union-attr]
    assert versions(edge) == {"2.0.0": AGENTS}
    assert edge.link.refused == 0
    assert np.all(edge.table.state[:, 0] == edge.ticks)  # every agent counted every tick
    assert np.all(carried >= 3)  # every agent moved once, after v1 counted
    assert np.array_equal(edge.table.state[:, 1], carried)  # what es_migrate computed
    assert len(np.unique(carried)) == 2  # the 20 % stage and the rest, each at its tick
    assert edge.link.state_moves == {"migrated": AGENTS, "restored": 0}


def test_rollback_across_a_layout_gives_each_agent_the_state_it_left_v1_with(
    fleet: Fleet, tmp_path: Path
) -> None:
    edge = odometer_edge(fleet, tmp_path)
    carried = np.full(AGENTS, -1.0, dtype=np.float32)
    tick(fleet, edge, carried)
    fleet.store.start_rollout(plan("1.0.0", "2.0.0", stages=(Stage(0.5, 100),)), actor="ops")
    fleet.refresh()
    for _ in range(4):
        tick(fleet, edge, carried)
    on_v2 = edge.table.policy != 0
    assert 0.3 * AGENTS < on_v2.sum() < 0.7 * AGENTS
    assert np.array_equal(edge.table.state[on_v2, 1], carried[on_v2])
    fleet.store.rollback("odometer", actor="bob")
    fleet.refresh()
    tick(fleet, edge, carried)
    assert versions(edge) == {"1.0.0": AGENTS}
    # v1 cannot read v2's layout: the returning agents have the state they left with
    # (their count when they moved, then this tick's step); nothing of v2's is left
    assert np.array_equal(edge.table.state[on_v2, 0], carried[on_v2] + 1)
    assert np.all(edge.table.state[on_v2, 1] == 0)
    assert np.all(edge.table.state[~on_v2, 0] == edge.ticks)
    assert edge.link.state_moves == {"migrated": int(on_v2.sum()), "restored": int(on_v2.sum())}


@pytest.mark.parametrize(("version", "error"), [("3.0.0", "exports es_migrate"), ("4.0.0", "trap")])
def test_rollout_across_a_layout_refused_without_a_working_es_migrate_v1_runs_on(
    fleet: Fleet, tmp_path: Path, version: str, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    edge = odometer_edge(fleet, tmp_path)
    carried = np.full(AGENTS, -1.0, dtype=np.float32)
    tick(fleet, edge, carried)
    fleet.store.start_rollout(plan("1.0.0", version, stages=(Stage(1.0),)), actor="ops")
    fleet.refresh()
    for _ in range(3):
        tick(fleet, edge, carried)
    assert versions(edge) == {"1.0.0": AGENTS}
    assert edge.link.refused == 1
    assert any("not applied" in r.getMessage() and error in r.getMessage() for r in caplog.records)
    assert np.all(edge.table.state[:, 0] == edge.ticks)  # no agent's state touched
    assert np.all(edge.table.state[:, 1] == 0)
    assert edge.link.state_moves == {"migrated": 0, "restored": 0}


PICKY_MIGRATE = """(func (export "es_migrate") (param $n i32) (param $old_dim i32)
    (param $old i32) (param $new i32) (result i32)
    (local $i i32) (local $c f32)
    ;; v1's count carried over as [count, count]; a count of 6 or more traps
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $c (f32.load (i32.add (local.get $old) (i32.shl (local.get $i) (i32.const 2)))))
      (if (f32.ge (local.get $c) (f32.const 6)) (then unreachable))
      (f32.store (i32.add (local.get $new) (i32.shl (local.get $i) (i32.const 3))) (local.get $c))
      (f32.store (i32.add (local.get $new) (i32.add (i32.shl (local.get $i) (i32.const 3))
        (i32.const 4))) (local.get $c))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 0))"""


def test_rollback_when_es_migrate_fails_at_a_later_stage_agents_count_as_faults(
    tmp_path: Path,
) -> None:
    """The trial at the rollout's start passes (small counts); the move to 100 % fails
    (es_migrate traps on a count of 6 or more): those agents stay on v1 and count as
    v2's faults, so the gateway rolls the rollout back within its window."""
    picky = policy_wat(COUNT_STEP, descriptor=WIDE, extra=PICKY_MIGRATE)
    modules = {"1.0.0": ODOMETER_V1, "2.0.0": picky}
    with fleet_of(tmp_path, plan("0.0.0", "1.0.0"), modules) as fleet:
        edge = odometer_edge(fleet, tmp_path)
        carried = np.full(AGENTS, -1.0, dtype=np.float32)
        tick(fleet, edge, carried)
        stages = (Stage(0.2, hold_ticks=8), Stage(1.0, hold_ticks=50))
        fleet.store.start_rollout(plan("1.0.0", "2.0.0", stages=stages), actor="ops")
        fleet.refresh()
        tick(fleet, edge, carried)
        first = edge.table.policy != 0
        assert 0.1 * AGENTS < first.sum() < 0.3 * AGENTS  # migrated: their counts were 1
        for _ in range(30):
            tick(fleet, edge, carried)
            if fleet.store.deployment("odometer").plan is None:  # type: ignore[union-attr]
                break
        tick(fleet, edge, carried)
        last = fleet.store.history("odometer")[-1]
        assert (last.action, last.actor, last.version) == ("rollback", "rollout", "2.0.0")
        assert versions(edge) == {"1.0.0": AGENTS}
        assert edge.link.refused >= 1
        # the agents that never moved counted every tick; those of the first stage are
        # back with the state they left v1 with, and counted on from there
        assert np.all(edge.table.state[~first, 0] == edge.ticks)
        assert np.all(edge.table.state[first, 0] < edge.ticks)
        assert np.all(edge.table.state[first, 0] > carried[first])
        assert np.all(edge.table.state[:, 1] == 0)
