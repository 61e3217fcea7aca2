import numpy as np
import pytest
import wasmtime

from edgeswarm.agents_wasm import module_path
from edgeswarm.edge import AgentTable, FlockingWorld
from edgeswarm.edge.policy import (
    FuelBudget,
    ModuleCache,
    PolicyAbiError,
    PolicyFuelExhausted,
    PolicyLoadError,
    PolicySet,
    PolicyTrap,
    WasmPolicy,
)
from edgeswarm.edge.policy import boids as policies
from edgeswarm.edge.policy.boids import boids_numpy
from tests.wasm_fixtures import (
    INIT_REFUSES,
    SPINNING,
    STEP_FAILS,
    TRAPPING,
    WRONG_ABI,
    policy_wat,
)


@pytest.fixture
def boids():
    with WasmPolicy(module_path("boids"), cache=ModuleCache(cache_dir=None)) as policy:
        yield policy


def flock(count: int, seed: int = 3) -> tuple[FlockingWorld, AgentTable]:
    world = FlockingWorld(count=count, seed=seed)
    table = AgentTable.create(count=count, obs_dim=8, state_dim=2, act_dim=2)
    return world, table


def test_boids_is_abi_v1_and_named_by_its_descriptor(boids):
    assert boids.name == "boids"
    assert boids.descriptor.dims == (8, 2, 2)
    assert boids.dims == (8, 2, 2)
    assert boids.call("es_abi_version") == 1


@pytest.mark.parametrize("count", [1, 2, 7, 1000])
def test_wasm_matches_numpy_reference_over_several_ticks(boids, count):
    world, table = flock(count)
    ref_state = np.zeros((count, 2), np.float32)
    ref_actions = np.zeros((count, 2), np.float32)
    rng = np.random.default_rng(count)
    for _ in range(6):
        world.sense(table)
        # jitter so that tiny flocks (one agent per cell) still see non-zero inputs
        table.observations += rng.normal(0.0, 0.5, table.observations.shape).astype(np.float32)
        boids.step(table.observations, table.state, table.actions)
        boids_numpy(table.observations, ref_state, ref_actions)
        np.testing.assert_allclose(table.actions, ref_actions, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(table.state, ref_state, rtol=1e-6, atol=1e-7)
        world.apply(table.actions, 0.1)
    assert np.abs(table.actions).max() > 0  # the flock actually produced non-trivial actions


def test_actions_are_clamped_and_state_smoothed(boids):
    obs = np.zeros((2, 8), np.float32)
    obs[0, 6:8] = [100.0, 0.0]  # huge avoidance: clamp to max accel
    obs[1, 2:4] = [2.0, 4.0]  # small cohesion: a = 0.05 * (2, 4)
    state = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)
    actions = np.empty((2, 2), np.float32)
    boids.step(obs, state, actions)
    np.testing.assert_allclose(actions[0], [0.5 * policies.MAX_ACCEL, 0.0], rtol=1e-6)
    np.testing.assert_allclose(actions[1], [0.5 + 0.05, -0.5 + 0.1], rtol=1e-6)
    np.testing.assert_array_equal(state, actions)


def test_wat_constants_equal_python_constants():
    cache = ModuleCache(cache_dir=None)
    module = cache.compile(module_path("boids").read_bytes())
    store = wasmtime.Store(cache.engine)
    store.set_fuel(1000)
    exports = wasmtime.Instance(store, module, []).exports(store)
    for export, value in [
        ("boids_cohesion_weight", policies.COHESION_WEIGHT),
        ("boids_alignment_weight", policies.ALIGNMENT_WEIGHT),
        ("boids_avoidance_weight", policies.AVOIDANCE_WEIGHT),
        ("boids_max_accel", policies.MAX_ACCEL),
        ("boids_smoothing", policies.SMOOTHING),
    ]:
        constant = exports[export]
        assert isinstance(constant, wasmtime.Global)
        assert constant.value(store) == np.float32(value)


def test_memory_blocks_are_zero_copy_views_on_linear_memory(boids):
    world, table = flock(64)
    world.sense(table)
    boids.step(table.observations, table.state, table.actions)
    obs_at, state_at, act_at = boids.offsets
    assert obs_at % 16 == 0
    assert state_at % 16 == 0
    assert act_at % 16 == 0
    block = boids.obs_block
    assert not block.flags.owndata
    assert boids.read_memory(obs_at, table.observations.nbytes) == table.observations.tobytes()
    assert boids.read_memory(act_at, table.actions.nbytes) == table.actions.tobytes()
    block[0, 0] = 1234.5  # a write through the view lands in linear memory
    assert boids.read_memory(obs_at, 4) == np.float32(1234.5).tobytes()


def test_blocks_grow_with_the_agent_count_and_stay_correct(boids):
    for count in (4, 100, 5000):
        world, table = flock(count, seed=count)
        world.sense(table)
        ref_state = np.zeros((count, 2), np.float32)
        ref_actions = np.zeros((count, 2), np.float32)
        boids.step(table.observations, table.state, table.actions)
        boids_numpy(table.observations, ref_state, ref_actions)
        assert boids.capacity >= count
        np.testing.assert_allclose(table.actions, ref_actions, rtol=1e-6, atol=1e-7)


def test_views_follow_memory_growth_between_ticks():
    # es_step grows memory by a page each call: the host must rebuild its views.
    growing = policy_wat(
        """(func (export "es_step") (param $n i32) (param $obs i32) (param $st i32) (param $act i32)
          (result i32)
          (drop (memory.grow (i32.const 1)))
          (f32.store (local.get $act) (f32.load (local.get $obs)))
          (i32.const 0))""",
        name="grower",
    )
    with WasmPolicy(growing, cache=ModuleCache(cache_dir=None)) as policy:
        for value in (1.0, 2.0, 3.0):
            obs = np.full((1, 8), value, np.float32)
            actions = np.zeros((1, 2), np.float32)
            policy.step(obs, np.zeros((1, 2), np.float32), actions)
            assert actions[0, 0] == value


def test_module_is_compiled_once_per_cache():
    cache = ModuleCache(cache_dir=None)
    with (
        WasmPolicy(module_path("boids"), cache=cache),
        WasmPolicy(module_path("boids"), cache=cache),
    ):
        assert len(cache) == 1
        assert cache.stats.compiled == 1


def test_tiny_fuel_budget_raises_fuel_exhausted():
    world, table = flock(1000)
    world.sense(table)
    with WasmPolicy(module_path("boids"), fuel=FuelBudget(base=1000, per_agent=1)) as policy:
        state_before = table.state.copy()
        with pytest.raises(PolicyFuelExhausted, match="boids"):
            policy.step(table.observations, table.state, table.actions)
        assert np.array_equal(table.state, state_before)  # nothing written back


def test_endless_loop_is_stopped_by_fuel():
    with WasmPolicy(SPINNING) as policy:
        obs = np.zeros((3, 8), np.float32)
        with pytest.raises(PolicyFuelExhausted, match="spinner") as info:
            policy.step(obs, np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32))
    assert info.value.kind == "fuel"
    assert info.value.policy == "spinner"


def test_unreachable_raises_policy_trap():
    obs, state, actions = (np.zeros((2, d), np.float32) for d in (8, 2, 2))
    with WasmPolicy(TRAPPING) as policy, pytest.raises(PolicyTrap, match="unreach") as info:
        policy.step(obs, state, actions)
    assert info.value.kind == "trap"


def test_nonzero_status_raises_abi_error():
    with WasmPolicy(STEP_FAILS) as policy, pytest.raises(PolicyAbiError) as info:
        policy.step(
            np.zeros((1, 8), np.float32), np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32)
        )
    assert info.value.status == 7
    assert info.value.kind == "abi"


def test_config_blob_reaches_es_init():
    with WasmPolicy(INIT_REFUSES, config=b"ok") as policy:
        assert policy.config == b"ok"
    with pytest.raises(PolicyAbiError, match="es_init") as info:
        WasmPolicy(INIT_REFUSES)  # empty config: refused with status 5
    assert info.value.status == 5
    with pytest.raises(PolicyAbiError) as info:
        WasmPolicy(INIT_REFUSES, config=b"no")
    assert info.value.status == 6


def test_policy_set_with_interleaved_agents_writes_back_state():
    count = 10
    world, table = flock(count)
    table.policy[:] = [0, 1] * 5  # not contiguous: index-array groups
    world.sense(table)
    with PolicySet([WasmPolicy(module_path("boids")), WasmPolicy(module_path("boids"))]) as pset:
        pset.step(table)
    ref_state = np.zeros((count, 2), np.float32)
    ref_actions = np.zeros((count, 2), np.float32)
    boids_numpy(table.observations, ref_state, ref_actions)
    np.testing.assert_allclose(table.actions, ref_actions, rtol=1e-6)
    np.testing.assert_allclose(table.state, ref_state, rtol=1e-6)


def test_wrong_abi_version_is_refused():
    with pytest.raises(PolicyLoadError, match=r"es_abi_version\(\) returned 3"):
        WasmPolicy(WRONG_ABI)


def test_missing_and_mistyped_exports_are_named():
    module = b"""(module (memory (export "memory") 1)
      (func (export "es_step") (param i32) (result i32) (i32.const 0)))"""
    with pytest.raises(PolicyLoadError) as info:
        WasmPolicy(module)
    message = str(info.value)
    assert "missing export 'es_alloc'" in message
    assert "missing export 'es_describe'" in message
    assert "missing export 'es_init'" in message
    assert "'es_step' has type func (i32) -> (i32)" in message
    assert info.value.kind == "load"


def test_garbage_bytes_are_refused():
    with pytest.raises(PolicyLoadError):
        WasmPolicy(b"\0asm\x02\0\0\0")


def test_unreadable_path_is_a_load_error(tmp_path):
    with pytest.raises(PolicyLoadError, match="cannot read"):
        WasmPolicy(tmp_path / "missing.wasm")


def test_closed_policy_refuses_to_step(boids):
    boids.close()
    boids.close()  # idempotent
    assert boids.closed
    with pytest.raises(Exception, match="closed"):
        boids.step(
            np.zeros((1, 8), np.float32), np.zeros((1, 2), np.float32), np.zeros((1, 2), np.float32)
        )


def test_abi_exports_are_called_without_per_call_type_checks():
    # wasmtime-py's checked Func.__call__ costs ~35 us a call; export_call uses the
    # unchecked C entry point for the ABI exports (types checked at load). If an
    # upgrade of wasmtime-py removes what it relies on, this fails: only speed is lost.
    from edgeswarm.edge.policy import export_call

    assert export_call.FAST_CALLS
    with WasmPolicy(TRAPPING) as trapper:
        with pytest.raises(PolicyTrap, match="unreachable"):  # traps still surface, typed
            trapper.step(*(np.zeros((3, d), np.float32) for d in (8, 2, 2)))
        assert trapper.call("es_abi_version") == 1
