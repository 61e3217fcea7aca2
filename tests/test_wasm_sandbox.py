"""Hostile modules are stopped within one PolicySet.step; healthy ones keep stepping."""

import logging

import numpy as np
import pytest

from edgeswarm.agents_wasm import module_path
from edgeswarm.edge import AgentTable, FlockingWorld
from edgeswarm.edge.policy import (
    ModuleCache,
    PolicyAbiError,
    PolicyFault,
    PolicyFuelExhausted,
    PolicyLoadError,
    PolicyMemoryExceeded,
    PolicySet,
    PolicySpec,
    PolicyTrap,
    WasmPolicy,
)
from edgeswarm.edge.policy.boids import boids_numpy
from edgeswarm.edge.policy.set import Fallback
from tests.wasm_fixtures import (
    BAD_DESCRIPTOR,
    FORBIDDEN_IMPORT,
    INIT_REFUSES,
    MALFORMED,
    MEMORY_BOMB,
    MISTYPED_IMPORT,
    NOT_JSON_DESCRIPTOR,
    SPINNING,
    STEP_FAILS,
    TRAPPING,
    WRONG_ABI,
    policy_wat,
)

COUNT = 200
HALF = COUNT // 2

HOSTILE = [
    pytest.param(SPINNING, PolicyFuelExhausted, "fuel", id="infinite-loop"),
    pytest.param(MEMORY_BOMB, PolicyMemoryExceeded, "memory", id="memory-bomb"),
    pytest.param(TRAPPING, PolicyTrap, "trap", id="unreachable"),
    pytest.param(STEP_FAILS, PolicyAbiError, "abi", id="step-nonzero"),
    pytest.param(WRONG_ABI, PolicyLoadError, "load", id="wrong-abi"),
    pytest.param(FORBIDDEN_IMPORT, PolicyLoadError, "load", id="wasi-import"),
    pytest.param(MISTYPED_IMPORT, PolicyLoadError, "load", id="mistyped-import"),
    pytest.param(MALFORMED, PolicyLoadError, "load", id="malformed"),
    pytest.param(BAD_DESCRIPTOR, PolicyLoadError, "load", id="bad-descriptor"),
    pytest.param(NOT_JSON_DESCRIPTOR, PolicyLoadError, "load", id="descriptor-not-json"),
    pytest.param(INIT_REFUSES, PolicyAbiError, "abi", id="init-refuses"),
]


@pytest.fixture(scope="module")
def cache():
    return ModuleCache(cache_dir=None)


def half_and_half() -> tuple[FlockingWorld, AgentTable]:
    world = FlockingWorld(count=COUNT, seed=5)
    table = AgentTable.create(count=COUNT, obs_dim=8, state_dim=2, act_dim=2)
    table.policy[HALF:] = 1
    return world, table


@pytest.mark.parametrize(("module", "error", "kind"), HOSTILE)
def test_hostile_policy_is_stopped_in_one_step_and_healthy_one_keeps_going(
    cache, caplog, module, error, kind
):
    world, table = half_and_half()
    faults: list[PolicyFault] = []
    specs = [
        PolicySpec(module_path("boids")),
        PolicySpec(module, name="hostile"),
    ]
    ref_state = np.zeros((HALF, 2), np.float32)
    ref_actions = np.zeros((HALF, 2), np.float32)
    with (
        caplog.at_level(logging.WARNING, logger="edgeswarm.edge"),
        PolicySet(specs, cache=cache, on_fault=faults.append) as pset,
    ):
        for _ in range(3):
            world.sense(table)
            table.actions[:] = 99.0  # stale values must be overwritten
            pset.step(table)
            assert pset.is_quarantined(1)
            assert not pset.is_quarantined(0)
            boids_numpy(table.observations[:HALF], ref_state, ref_actions)
            np.testing.assert_allclose(table.actions[:HALF], ref_actions, rtol=1e-6, atol=1e-7)
            assert (table.actions[HALF:] == 0).all()
            world.apply(table.actions, 0.1)
        assert isinstance(pset.quarantined[1], error)
        assert pset.fault_counts == {("hostile", kind): 1}
    assert [(f.slot, f.policy, f.kind) for f in faults] == [(1, "hostile", kind)]
    records = [r for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(records) == 1  # logged once, not every tick
    assert records[0].policy == "hostile"
    assert records[0].kind == kind
    assert "hostile" in records[0].error


def test_hold_fallback_keeps_last_actions_and_zero_clears_them(cache):
    # Healthy for two ticks, then es_step starts trapping (config flips at tick 2).
    flaky = policy_wat(
        """(global $ticks (mut i32) (i32.const 0))
        (func (export "es_step") (param $n i32) (param $obs i32) (param $st i32) (param $act i32)
          (result i32)
          (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
          (if (i32.gt_u (global.get $ticks) (i32.const 2)) (then unreachable))
          (f32.store (local.get $act) (f32.convert_i32_u (global.get $ticks)))
          (f32.store offset=4 (local.get $act) (f32.const 0.5))
          (i32.const 0))""",
        name="flaky",
    )
    fallbacks: tuple[tuple[Fallback, list[float]], ...] = (
        ("hold", [2.0, 0.5]),
        ("zero", [0.0, 0.0]),
    )
    for fallback, expected in fallbacks:
        table = AgentTable.create(count=1, obs_dim=8, state_dim=2, act_dim=2)
        with PolicySet([PolicySpec(flaky)], cache=cache, fallback=fallback) as pset:
            pset.step(table)
            pset.step(table)
            np.testing.assert_array_equal(table.actions[0], [2.0, 0.5])
            pset.step(table)  # traps
            assert pset.is_quarantined(0)
            np.testing.assert_array_equal(table.actions[0], expected)
            pset.step(table)
            np.testing.assert_array_equal(table.actions[0], expected)


def test_reenable_makes_a_fresh_instance_with_the_same_config(cache):
    # A policy that fails once its (instance-local) counter hits 2: reenable resets it.
    counting = policy_wat(
        """(global $ticks (mut i32) (i32.const 0))
        (func (export "es_step") (param $n i32) (param $obs i32) (param $st i32) (param $act i32)
          (result i32)
          (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
          (f32.store (local.get $act) (f32.convert_i32_u (global.get $ticks)))
          (if (result i32) (i32.ge_u (global.get $ticks) (i32.const 2))
            (then (i32.const 9)) (else (i32.const 0))))""",
        name="counting",
        init=INIT_REFUSES_INIT,
    )
    table = AgentTable.create(count=1, obs_dim=8, state_dim=2, act_dim=2)
    compiled_before = cache.stats.compiled
    with PolicySet([PolicySpec(counting, config=b"ok")], cache=cache) as pset:
        first = pset[0]
        pset.step(table)
        assert table.actions[0, 0] == 1.0
        pset.step(table)
        assert pset.is_quarantined(0)
        assert pset.reenable(0)
        assert not pset.is_quarantined(0)
        assert pset[0] is not first
        assert isinstance(first, WasmPolicy)
        assert first.closed
        pset.step(table)
        assert table.actions[0, 0] == 1.0  # fresh state
        assert pset.fault_counts == {("counting", "abi"): 1}
    assert cache.stats.compiled - compiled_before <= 1  # reenable reused the compiled module


INIT_REFUSES_INIT = """(func (export "es_init") (param $ptr i32) (param $len i32) (result i32)
  (if (i32.ne (local.get $len) (i32.const 2)) (then (return (i32.const 5))))
  (i32.const 0))"""


def test_failed_load_occupies_its_slot_and_reenable_retries(cache):
    table = AgentTable.create(count=4, obs_dim=8, state_dim=2, act_dim=2)
    table.policy[2:] = 1
    with PolicySet(
        [PolicySpec(module_path("boids")), PolicySpec(MALFORMED, name="broken")], cache=cache
    ) as pset:
        assert len(pset) == 2
        assert pset[1] is None
        assert pset.is_quarantined(1)
        assert pset.name_of(1) == "broken"
        pset.step(table)
        assert not pset.reenable(1)  # still malformed: quarantined again, counted again
        assert pset.fault_counts == {("broken", "load"): 2}


def test_policy_whose_dims_do_not_fit_the_table_is_quarantined(cache):
    narrow = policy_wat(name="narrow", descriptor={"obs_dim": 3})
    table = AgentTable.create(count=2, obs_dim=8, state_dim=2, act_dim=2)
    with PolicySet([PolicySpec(narrow)], cache=cache) as pset:
        pset.step(table)
        assert isinstance(pset.quarantined[0], PolicyAbiError)


def test_instance_memory_limit_is_enforced_at_load(cache):
    big = policy_wat(name="big", memory_pages=64)  # 4 MiB initial memory
    with pytest.raises(PolicyLoadError, match="instantiation failed"):
        WasmPolicy(big, cache=cache, memory_limit=1024 * 1024)
    with WasmPolicy(big, cache=cache, memory_limit=8 * 1024 * 1024):
        pass


def test_memory_grow_past_the_limit_returns_minus_one(cache):
    grow = policy_wat(
        name="grow",
        extra="""(func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))""",
    )
    with WasmPolicy(grow, cache=cache, memory_limit=2 * 1024 * 1024) as policy:
        assert policy.call("grow", 64) == -1  # 1 + 64 pages > 32 pages
        assert policy.call("grow", 1) >= 1


def test_bad_fallback_is_refused():
    with pytest.raises(ValueError, match="fallback"):
        PolicySet([], fallback="panic")  # type: ignore[arg-type]


BUILT_HOSTILE_KINDS = {
    "hostile_import": "load",
    "hostile_loop": "fuel",
    "hostile_membomb": "memory",
    "hostile_trap": "trap",
    "hostile_wrong_abi": "load",
}


@pytest.mark.parametrize("name", sorted(BUILT_HOSTILE_KINDS))
def test_built_hostile_modules_are_stopped_in_one_step(cache, name):
    # The C fixtures from edgeswarm/agents_wasm (built with zig); they declare state_dim 0.
    path = module_path(name)
    if not path.exists():
        pytest.skip(f"{path.name} is not built")
    table = AgentTable.create(count=10, obs_dim=8, state_dim=0, act_dim=2)
    table.actions[:] = 7.0
    with PolicySet([PolicySpec(path)], cache=cache) as pset:
        pset.step(table)
        assert pset.is_quarantined(0)
        assert pset.quarantined[0].kind == BUILT_HOSTILE_KINDS[name]
        assert (table.actions == 0).all()


def test_the_epoch_ticker_runs_while_held():
    from edgeswarm.edge.policy.deadline import EpochTicker
    from edgeswarm.edge.policy.module_cache import new_engine

    ticker = EpochTicker(new_engine(), period_s=0.002)
    assert not ticker.running
    assert ticker.ticks_for(0.05) == 26  # 25 periods of 2 ms, plus the one under way
    ticker.hold()
    ticker.hold()
    ticker.release()
    assert ticker.running
    ticker.release()
    assert not ticker.running
    with pytest.raises(RuntimeError, match="released more often"):
        ticker.release()


class CountingEngine:
    """Stands in for a wasmtime.Engine where only the number of epochs matters."""

    def __init__(self) -> None:
        self.epochs = 0

    def increment_epoch(self) -> None:
        self.epochs += 1


def test_the_epoch_ticker_advances_only_while_a_call_is_in_flight():
    """Held but idle, the ticker's thread sleeps (before, it woke every 2 ms for the life
    of the process, taking the GIL from the edge's tick loop); during a call it advances
    the epoch every period, and it stops again when the last call ends."""
    import time

    from edgeswarm.edge.policy.deadline import EpochTicker

    engine = CountingEngine()
    ticker = EpochTicker(engine, period_s=0.002)  # type: ignore[arg-type]
    ticker.hold()
    try:
        time.sleep(0.1)
        assert engine.epochs == 0
        ticker.call_started()
        ticker.call_started()  # calls nest (a second policy on the same engine)
        ticker.call_ended()
        deadline = time.monotonic() + 5
        while engine.epochs < 10 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert engine.epochs >= 10
        ticker.call_ended()
        settled = -1  # the thread sees the call ended within a period or two
        deadline = time.monotonic() + 5
        while engine.epochs != settled and time.monotonic() < deadline:
            settled = engine.epochs
            time.sleep(0.02)
        time.sleep(0.1)
        assert engine.epochs == settled
        with pytest.raises(RuntimeError, match="ended more often"):
            ticker.call_ended()
    finally:
        ticker.release()
    assert not ticker.running


def test_back_to_back_calls_wake_the_parked_epoch_thread_once():
    """A call that starts while the ticker's thread is still ticking (a call ended less
    than a period ago) does not wake it again: waking a parked thread costs the caller a
    notify and a GIL hand-over, ~5 % of a 10 000-agent step. Sparse calls wake it each
    time, and a call that starts after it parked is still ticked through."""
    import time

    from edgeswarm.edge.policy.deadline import EpochTicker

    engine = CountingEngine()
    ticker = EpochTicker(engine, period_s=0.002)  # type: ignore[arg-type]
    wakeups = 0
    notify_all = ticker._call_in_flight.notify_all

    def counted() -> None:
        nonlocal wakeups
        wakeups += 1
        notify_all()

    ticker._call_in_flight.notify_all = counted  # type: ignore[method-assign]
    ticker.hold()
    try:
        calls = 0
        end = time.monotonic() + 0.2
        while time.monotonic() < end and calls < 1_000_000:
            with ticker:
                calls += 1
        assert calls >= 100
        assert wakeups <= 3, f"{wakeups} wake-ups for {calls} back-to-back calls"
        assert engine.epochs >= 10  # ticked all along
        time.sleep(0.05)  # the thread parks: a period passed with no call
        woken = wakeups
        before = engine.epochs
        time.sleep(0.05)
        assert engine.epochs == before
        with ticker:
            deadline = time.monotonic() + 5
            while engine.epochs < before + 5 and time.monotonic() < deadline:
                time.sleep(0.005)
        assert engine.epochs >= before + 5
        assert wakeups == woken + 1  # that call woke it
    finally:
        ticker.release()


def test_each_policy_with_a_deadline_holds_its_engine_ticker(cache):
    from edgeswarm.edge.policy.deadline import ticker_for

    ticker = ticker_for(cache.engine)
    held = ticker.holders
    with WasmPolicy(module_path("boids"), cache=cache, deadline_s=0.05) as first:
        assert ticker.running
        assert ticker.holders == held + 1
        with WasmPolicy(module_path("boids"), cache=cache, deadline_s=None):
            assert ticker.holders == held + 1  # no deadline, no ticker
        second = first.respawn()
        first.close()
        assert ticker.holders == held + 1  # the respawned instance holds it now
        second.close()
    assert ticker.holders == held
    with pytest.raises(ValueError, match="deadline_s"):
        WasmPolicy(module_path("boids"), cache=cache, deadline_s=0)


def test_a_policy_within_its_deadline_runs_tick_after_tick(cache):
    # 200 agents take well under a millisecond: a 50 ms deadline never fires
    world = FlockingWorld(count=COUNT, seed=2)
    table = AgentTable.create(count=COUNT, obs_dim=8, state_dim=2, act_dim=2)
    with PolicySet([PolicySpec(module_path("flocking"), deadline_s=0.05)], cache=cache) as pset:
        for _ in range(200):
            world.sense(table)
            pset.step(table)
            world.apply(table.actions)
        assert pset.quarantined_count == 0
