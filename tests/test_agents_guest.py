"""The shipped agent modules, checked as guests on their own (ABI v1, ``ABI.md``).

These tests drive each ``build/<name>.wasm`` directly with wasmtime, with stub
``"es"`` imports defined here, so they do not depend on the edge host
(``edgeswarm.edge.policy.wasm_host``). They check the exports and their signatures, the
ABI version, the descriptor, that the example policies equal their numpy
references bit for bit, and that the hostile fixtures misbehave as advertised.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import wasmtime
from numpy.typing import NDArray

from edgeswarm.agents_wasm import example_names, hostile_names, module_names, module_path
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.policy.boids import boids_numpy
from edgeswarm.edge.policy.reference import (
    MLP_CONFIG_BYTES,
    anomaly_numpy,
    mlp_config_blob,
    mlp_controller_numpy,
)
from edgeswarm.edge.world import FlockingWorld
from edgeswarm.models.anomaly import anomaly_reference

I32 = wasmtime.ValType.i32()
I64 = wasmtime.ValType.i64()

# ABI.md, "Exports" and "Imports".
ABI_EXPORTS: dict[str, tuple[list[wasmtime.ValType], list[wasmtime.ValType]]] = {
    "es_abi_version": ([], [I32]),
    "es_describe": ([], [I64]),
    "es_alloc": ([I32], [I32]),
    "es_init": ([I32, I32], [I32]),
    "es_step": ([I32, I32, I32, I32], [I32]),
}
ABI_IMPORTS: dict[str, tuple[list[wasmtime.ValType], list[wasmtime.ValType]]] = {
    "log": ([I32, I32, I32], []),
    "time_ns": ([], [I64]),
    "random_fill": ([I32, I32], []),
    "counter_add": ([I32, I32, I64], [I32]),
    "set_add": ([I32, I32, I32, I32], [I32]),
    "flag_get": ([I32, I32], [I32]),
    "model_infer": ([I32, I32, I32, I32, I32], [I32]),
    "heavy_request": ([I32] * 6, [I32]),
    "heavy_results": ([I32] * 7, [I32]),
}

# name -> (obs_dim, state_dim, act_dim, counters, models)
DESCRIPTORS: dict[str, tuple[int, int, int, list[str], list[str]]] = {
    "boids": (8, 2, 2, [], []),
    "flocking": (8, 2, 2, [], []),
    "mlp_controller": (8, 0, 2, [], []),
    "anomaly": (8, 1, 2, ["anomalies"], ["anomaly"]),
    "escalate": (8, 2, 2, ["anomalies"], ["anomaly"]),
    "odometer_v1": (8, 1, 2, [], []),
    "odometer_v2": (8, 2, 2, [], []),
    "hostile_loop": (8, 0, 2, [], []),
    "hostile_membomb": (8, 0, 2, [], []),
    "hostile_trap": (8, 0, 2, [], []),
    "hostile_wrong_abi": (8, 0, 2, [], []),
    "hostile_import": (8, 0, 2, [], []),
}

BASE_FUEL = 2_000_000  # ABI.md, "Fuel": default fuel per call ...
FUEL_PER_AGENT = 2_000  # ... plus this per agent for es_step
WASM_PAGE = 65_536

ModelFn = Callable[[str, NDArray[np.float32]], NDArray[np.float32] | int]


def _engine() -> wasmtime.Engine:
    """An engine with only the features ABI v1 allows (MVP + SIMD128 + bulk memory)."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.wasm_simd = True
    config.wasm_bulk_memory = True
    config.wasm_relaxed_simd = False
    config.wasm_threads = False
    config.wasm_multi_memory = False
    config.wasm_memory64 = False
    config.wasm_tail_call = False
    config.wasm_gc = False
    config.wasm_function_references = False
    config.wasm_exceptions = False
    return wasmtime.Engine(config)


ENGINE = _engine()


@dataclass
class HostCalls:
    """What the stub ``"es"`` imports saw."""

    logs: list[tuple[int, str]] = field(default_factory=list)
    counters: list[tuple[str, int]] = field(default_factory=list)
    model_calls: list[tuple[str, int, int, int]] = field(default_factory=list)  # id, in, n, out
    other: list[str] = field(default_factory=list)


class Guest:
    """One instance of a shipped module, with stub host imports."""

    def __init__(
        self,
        name: str,
        *,
        model: ModelFn | None = None,
        memory_limit: int | None = None,
        extra_imports: bool = False,
    ) -> None:
        self.name = name
        self.module = wasmtime.Module.from_file(ENGINE, str(module_path(name)))
        self.store = wasmtime.Store(ENGINE)
        if memory_limit is not None:
            self.store.set_limits(memory_size=memory_limit)
        self.calls = HostCalls()
        self.model = model
        linker = wasmtime.Linker(ENGINE)
        self._define_stubs(linker)
        if extra_imports:
            ty = wasmtime.FuncType([I32, I32, I32, I32], [I32])
            linker.define_func("wasi_snapshot_preview1", "fd_write", ty, lambda *args: 0)
        self.store.set_fuel(BASE_FUEL)
        self.instance = linker.instantiate(self.store, self.module)
        exports = self.instance.exports(self.store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory

    # -- stub imports --------------------------------------------------------------------

    def _define_stubs(self, linker: wasmtime.Linker) -> None:
        def text(caller: wasmtime.Caller, ptr: int, length: int) -> str:
            memory = caller.get("memory")
            assert isinstance(memory, wasmtime.Memory)
            return bytes(memory.read(caller, ptr, ptr + length)).decode("utf-8")

        def log(caller: wasmtime.Caller, level: int, ptr: int, length: int) -> None:
            self.calls.logs.append((level, text(caller, ptr, length)))

        def counter_add(caller: wasmtime.Caller, kp: int, kl: int, delta: int) -> int:
            self.calls.counters.append((text(caller, kp, kl), delta))
            return 0

        def model_infer(
            caller: wasmtime.Caller, ip: int, il: int, in_ptr: int, n: int, out_ptr: int
        ) -> int:
            model_id = text(caller, ip, il)
            self.calls.model_calls.append((model_id, in_ptr, n, out_ptr))
            if self.model is None:
                return -1
            memory = caller.get("memory")
            assert isinstance(memory, wasmtime.Memory)
            rows = np.frombuffer(
                bytes(memory.read(caller, in_ptr, in_ptr + 4 * 8 * n)), dtype="<f4"
            ).reshape(n, 8)
            result = self.model(model_id, rows)
            if isinstance(result, int):
                return result
            memory.write(caller, np.ascontiguousarray(result, dtype="<f4").tobytes(), out_ptr)
            return 0

        def unexpected(what: str) -> Callable[..., Any]:
            def stub(*args: Any) -> Any:
                self.calls.other.append(what)
                results = ABI_IMPORTS[what][1]
                return 0 if results else None

            return stub

        stubs: dict[str, Callable[..., Any]] = {
            "log": log,
            "counter_add": counter_add,
            "model_infer": model_infer,
        }
        for name, (params, results) in ABI_IMPORTS.items():
            ty = wasmtime.FuncType(params, results)
            if name in stubs:
                linker.define_func("es", name, ty, stubs[name], access_caller=True)
            else:
                linker.define_func("es", name, ty, unexpected(name))

    # -- calls ---------------------------------------------------------------------------

    def call(self, export: str, *args: int, fuel: int = BASE_FUEL) -> int:
        func = self.instance.exports(self.store)[export]
        assert isinstance(func, wasmtime.Func)
        self.store.set_fuel(fuel)
        result = func(self.store, *args)
        assert isinstance(result, int)
        return result

    def descriptor(self) -> dict[str, Any]:
        location = self.call("es_describe") & 0xFFFF_FFFF_FFFF_FFFF
        ptr, length = location >> 32, location & 0xFFFF_FFFF
        assert 0 < length <= 65_536
        raw = bytes(self.memory.read(self.store, ptr, ptr + length))
        result = json.loads(raw.decode("utf-8"))
        assert isinstance(result, dict)
        return result

    def alloc(self, size: int) -> int:
        ptr = self.call("es_alloc", size)
        assert ptr > 0
        assert ptr % 16 == 0
        assert ptr + size <= self.memory.data_len(self.store)
        return ptr

    def init(self, config: bytes = b"") -> int:
        ptr = self.alloc(max(len(config), 1))
        self.memory.write(self.store, config, ptr)
        return self.call("es_init", ptr, len(config))

    def write(self, ptr: int, array: NDArray[np.float32]) -> None:
        self.memory.write(self.store, np.ascontiguousarray(array, dtype="<f4").tobytes(), ptr)

    def read(self, ptr: int, shape: tuple[int, ...]) -> NDArray[np.float32]:
        count = int(np.prod(shape))
        raw = bytes(self.memory.read(self.store, ptr, ptr + 4 * count))
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)


class Batch:
    """Observation, state and action blocks for ``n`` agents inside a guest."""

    def __init__(self, guest: Guest, n: int, obs_dim: int, state_dim: int, act_dim: int) -> None:
        self.guest, self.n = guest, n
        self.dims = (obs_dim, state_dim, act_dim)
        self.obs = guest.alloc(4 * max(n * obs_dim, 1))
        self.state = guest.alloc(4 * max(n * state_dim, 1))
        self.act = guest.alloc(4 * max(n * act_dim, 1))
        guest.write(self.state, np.zeros(n * state_dim, dtype=np.float32))

    def step(
        self, obs: NDArray[np.float32], state: NDArray[np.float32] | None = None
    ) -> tuple[int, NDArray[np.float32], NDArray[np.float32]]:
        """Write ``obs`` (and ``state``), call es_step; returns (rc, actions, state)."""
        _, state_dim, act_dim = self.dims
        self.guest.write(self.obs, obs)
        if state is not None:
            self.guest.write(self.state, state)
        rc = self.guest.call(
            "es_step",
            self.n,
            self.obs,
            self.state,
            self.act,
            fuel=BASE_FUEL + FUEL_PER_AGENT * self.n,
        )
        return (
            rc,
            self.guest.read(self.act, (self.n, act_dim)),
            self.guest.read(self.state, (self.n, state_dim)),
        )


def bits(array: NDArray[np.float32]) -> NDArray[np.uint32]:
    """The float32 bit patterns, so equality is exact (and NaN == NaN)."""
    return np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)


def world_observations(count: int, ticks: int, seed: int = 7) -> list[NDArray[np.float32]]:
    """Observations of a real FlockingWorld, one array per tick (actions: boids_numpy)."""
    world = FlockingWorld(count, seed=seed)
    table = AgentTable.create(count=count, obs_dim=8, state_dim=2, act_dim=2)
    out = []
    for _ in range(ticks):
        world.sense(table)
        out.append(table.observations.copy())
        boids_numpy(table.observations.copy(), table.state, table.actions)
        world.apply(table.actions)
    return out


# -- every module ----------------------------------------------------------------------


def test_module_lists():
    assert set(example_names()) == {
        "boids",
        "flocking",
        "mlp_controller",
        "anomaly",
        "escalate",
        "odometer_v1",
        "odometer_v2",
    }
    assert set(hostile_names()) == {
        "hostile_loop",
        "hostile_membomb",
        "hostile_trap",
        "hostile_wrong_abi",
        "hostile_import",
    }
    assert set(module_names()) == set(DESCRIPTORS)


@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
def test_exports_imports_and_signatures(name):
    module = wasmtime.Module.from_file(ENGINE, str(module_path(name)))
    exports = {export.name: export.type for export in module.exports}
    assert isinstance(exports.pop("memory"), wasmtime.MemoryType)
    for export, (params, results) in ABI_EXPORTS.items():
        ty = exports.pop(export)
        assert isinstance(ty, wasmtime.FuncType), export
        assert [str(p) for p in ty.params] == [str(p) for p in params], export
        assert [str(r) for r in ty.results] == [str(r) for r in results], export
    if name == "odometer_v2":  # the optional export of a changed state layout
        ty = exports.pop("es_migrate")
        assert isinstance(ty, wasmtime.FuncType)
        assert [str(p) for p in ty.params] == ["i32"] * 4
        assert [str(r) for r in ty.results] == ["i32"]
    if name == "boids":  # the WAT example also exports its constants (test_wasm_policy)
        assert all(isinstance(ty, wasmtime.GlobalType) for ty in exports.values())
    else:
        assert exports == {}, f"exports beyond the ABI: {sorted(exports)}"
    imports = [(imp.module, imp.name, imp.type) for imp in module.imports]
    if name == "hostile_import":
        assert [(m, n) for m, n, _ in imports] == [("wasi_snapshot_preview1", "fd_write")]
        return
    for module_name, import_name, ty in imports:
        assert module_name == "es"
        assert import_name is not None
        params, results = ABI_IMPORTS[import_name]
        assert isinstance(ty, wasmtime.FuncType)
        assert [str(p) for p in ty.params] == [str(p) for p in params], import_name
        assert [str(r) for r in ty.results] == [str(r) for r in results], import_name
    expected_imports = {
        "anomaly": {"model_infer", "counter_add", "log"},
        "escalate": {"model_infer", "counter_add", "heavy_request", "heavy_results"},
    }.get(name, set())
    assert {n for _, n, _ in imports} == expected_imports


@pytest.mark.parametrize("name", sorted(DESCRIPTORS))
def test_abi_version_descriptor_and_alloc(name):
    guest = Guest(name, extra_imports=name == "hostile_import")
    assert guest.call("es_abi_version") == (99 if name == "hostile_wrong_abi" else 1)
    descriptor = guest.descriptor()
    obs_dim, state_dim, act_dim, counters, models = DESCRIPTORS[name]
    assert descriptor["name"] == {"odometer_v1": "odometer", "odometer_v2": "odometer"}.get(
        name, name
    )  # two versions of one policy
    assert (descriptor["obs_dim"], descriptor["state_dim"], descriptor["act_dim"]) == (
        obs_dim,
        state_dim,
        act_dim,
    )
    assert descriptor.get("counters", []) == counters
    assert descriptor.get("models", []) == models
    assert descriptor.get("sets", []) == []
    assert descriptor.get("flags", []) == []
    if name != "boids":  # C modules: stack first (0..64 KiB), then static data
        assert guest.call("es_describe") >> 32 >= 65_536
    # es_alloc: aligned, disjoint, grows memory, 0 on failure
    a = guest.alloc(5)
    b = guest.alloc(3 * WASM_PAGE)
    assert b >= a + 5
    assert guest.call("es_alloc", -1) == 0
    assert guest.call("es_alloc", 0x7FFF_FFFF) == 0
    assert guest.alloc(16) >= b + 3 * WASM_PAGE


def test_alloc_fails_cleanly_at_the_store_memory_limit():
    guest = Guest("flocking", memory_limit=2 * 1024 * 1024)
    assert guest.call("es_alloc", 4 * 1024 * 1024) == 0
    assert guest.alloc(1024) > 0


# -- flocking (C) and boids (WAT) == boids_numpy ---------------------------------------


@pytest.mark.parametrize("name", ["flocking", "boids"])
@pytest.mark.parametrize("count", [0, 1, 2, 7, 1001])
def test_flocking_matches_numpy_bit_for_bit(name, count):
    guest = Guest(name)
    assert guest.init(b"") == 0
    batch = Batch(guest, count, 8, 2, 2)
    ref_state = np.zeros((count, 2), dtype=np.float32)
    ref_actions = np.zeros((count, 2), dtype=np.float32)
    clamped = 0
    for obs in world_observations(count, ticks=12) if count else [np.zeros((0, 8), np.float32)]:
        rc, actions, state = batch.step(obs)
        assert rc == 0
        work = obs.copy()
        accel = (
            np.float32(0.05) * work[:, 2:4]
            + np.float32(0.2) * (work[:, 4:6] - work[:, 0:2])
            + np.float32(4.0) * work[:, 6:8]
        )
        clamped += int(np.count_nonzero((accel * accel).sum(axis=1) > 1.0))
        boids_numpy(work, ref_state, ref_actions)
        np.testing.assert_array_equal(bits(actions), bits(ref_actions))
        np.testing.assert_array_equal(bits(state), bits(ref_state))
    if count == 1001:
        assert clamped > 0, "the clamp branch was never exercised"


@pytest.mark.parametrize("name", ["flocking", "boids"])
def test_flocking_matches_numpy_on_extreme_inputs(name):
    rng = np.random.default_rng(3)
    count = 513
    obs = (rng.standard_normal((count, 8)) * rng.choice([1e-3, 1.0, 50.0], (count, 8))).astype(
        np.float32
    )
    state = rng.standard_normal((count, 2)).astype(np.float32)
    guest = Guest(name)
    assert guest.init(b"\x01\x02") == 0  # any blob is accepted
    batch = Batch(guest, count, 8, 2, 2)
    rc, actions, new_state = batch.step(obs, state)
    assert rc == 0
    ref_actions = np.zeros((count, 2), dtype=np.float32)
    boids_numpy(obs.copy(), state, ref_actions)
    np.testing.assert_array_equal(bits(actions), bits(ref_actions))
    np.testing.assert_array_equal(bits(new_state), bits(state))


def test_flocking_fuel_per_agent_is_within_the_default_budget():
    count = 1000
    guest = Guest("flocking")
    batch = Batch(guest, count, 8, 2, 2)
    obs = world_observations(count, ticks=1)[0]
    guest.write(batch.obs, obs)
    fuel = BASE_FUEL + FUEL_PER_AGENT * count
    assert guest.call("es_step", count, batch.obs, batch.state, batch.act, fuel=fuel) == 0
    used = fuel - guest.store.get_fuel()
    assert used < 100 * count, f"{used / count:.1f} fuel per agent"


# -- mlp_controller ----------------------------------------------------------------------


def _mlp_weights(seed: int = 11) -> tuple[NDArray[np.float32], ...]:
    rng = np.random.default_rng(seed)
    return tuple(
        rng.standard_normal(shape).astype(np.float32) * np.float32(0.5)
        for shape in ((8, 16), (16,), (16, 2), (2,))
    )


def test_mlp_controller_refuses_bad_config_and_unconfigured_step():
    guest = Guest("mlp_controller")
    batch = Batch(guest, 3, 8, 0, 2)
    rc, _, _ = batch.step(np.ones((3, 8), dtype=np.float32))
    assert rc != 0, "es_step must fail before a configuration is accepted"
    assert guest.init(b"") != 0
    assert guest.init(bytes(MLP_CONFIG_BYTES - 4)) != 0
    assert guest.init(bytes(MLP_CONFIG_BYTES + 4)) != 0
    assert guest.init(bytes(MLP_CONFIG_BYTES)) == 0
    rc, actions, _ = batch.step(np.ones((3, 8), dtype=np.float32))
    assert rc == 0
    np.testing.assert_array_equal(actions, np.zeros((3, 2), dtype=np.float32))


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 333])
def test_mlp_controller_matches_numpy(count):
    w1, b1, w2, b2 = _mlp_weights()
    blob = mlp_config_blob(w1, b1, w2, b2)
    assert len(blob) == MLP_CONFIG_BYTES
    guest = Guest("mlp_controller")
    assert guest.init(blob) == 0
    batch = Batch(guest, count, 8, 0, 2)
    rng = np.random.default_rng(count)
    inputs = [
        world_observations(count, ticks=3)[-1],
        rng.standard_normal((count, 8)).astype(np.float32) * np.float32(3.0),
    ]
    for obs in inputs:
        rc, actions, _ = batch.step(obs)
        assert rc == 0
        expected = mlp_controller_numpy(obs, w1, b1, w2, b2)
        np.testing.assert_array_equal(bits(actions), bits(expected))


# -- anomaly -----------------------------------------------------------------------------


def test_anomaly_calls_the_model_once_per_step_and_follows_its_scores():
    seen: list[NDArray[np.float32]] = []

    def model(model_id: str, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        assert model_id == "anomaly"
        seen.append(rows.copy())
        return anomaly_reference(rows)

    count = 300
    guest = Guest("anomaly", model=model)
    assert guest.init(b"") == 0
    batch = Batch(guest, count, 8, 1, 2)
    rng = np.random.default_rng(5)
    ref_state = np.zeros((count, 1), dtype=np.float32)
    ref_actions = np.zeros((count, 2), dtype=np.float32)
    memory_end = guest.memory.data_len(guest.store)
    blocks = [
        (batch.obs, 4 * 8 * count),
        (batch.state, 4 * count),
        (batch.act, 4 * 2 * count),
    ]
    total_alarms = []
    for tick in range(8):
        obs = rng.standard_normal((count, 8)).astype(np.float32)
        if tick >= 2:  # from tick 2, the first 40 agents are far out of range
            obs[:40, 3] = np.float32(9.0)
        calls_before = len(guest.calls.model_calls)
        rc, actions, state = batch.step(obs)
        assert rc == 0
        assert len(guest.calls.model_calls) == calls_before + 1, "one model_infer per batch"
        model_id, in_ptr, n, out_ptr = guest.calls.model_calls[-1]
        assert (model_id, in_ptr, n) == ("anomaly", batch.obs, count)
        memory_end = guest.memory.data_len(guest.store)
        assert out_ptr > 0
        assert out_ptr + 4 * count <= memory_end
        for start, size in blocks:  # the scores go to the module's own scratch
            assert out_ptr + 4 * count <= start or out_ptr >= start + size
        np.testing.assert_array_equal(seen[-1], obs)
        k = anomaly_numpy(anomaly_reference(obs), ref_state, ref_actions)
        np.testing.assert_array_equal(bits(actions), bits(ref_actions))
        np.testing.assert_array_equal(bits(state), bits(ref_state))
        total_alarms.append(k)
    assert total_alarms[0] == 0, total_alarms
    assert total_alarms[-1] >= 40, total_alarms
    # one counter_add per batch with alarms, none otherwise
    assert guest.calls.counters == [("anomalies", k) for k in total_alarms if k > 0]
    # logged once, when the alarms started
    assert len(guest.calls.logs) == 1
    level, message = guest.calls.logs[0]
    assert level == 2
    assert message.startswith("anomaly: ")
    assert f"of {count} agents alarmed" in message
    assert guest.calls.other == []


def test_anomaly_fails_when_the_model_fails():
    guest = Guest("anomaly", model=lambda model_id, rows: -1)
    batch = Batch(guest, 4, 8, 1, 2)
    rc, _, _ = batch.step(np.zeros((4, 8), dtype=np.float32))
    assert rc != 0
    assert len(guest.calls.model_calls) == 1
    assert guest.calls.counters == []


def test_anomaly_with_no_agents_calls_nothing():
    guest = Guest("anomaly", model=lambda model_id, rows: anomaly_reference(rows))
    batch = Batch(guest, 0, 8, 1, 2)
    rc, _, _ = batch.step(np.zeros((0, 8), dtype=np.float32))
    assert rc == 0
    assert guest.calls.model_calls == []


# -- hostile fixtures --------------------------------------------------------------------


def test_hostile_loop_runs_out_of_fuel():
    guest = Guest("hostile_loop")
    assert guest.init() == 0
    batch = Batch(guest, 4, 8, 0, 2)
    with pytest.raises(wasmtime.Trap) as info:
        batch.step(np.zeros((4, 8), dtype=np.float32))
    assert info.value.trap_code == wasmtime.TrapCode.OUT_OF_FUEL


def test_hostile_trap_traps():
    guest = Guest("hostile_trap")
    assert guest.init() == 0
    batch = Batch(guest, 4, 8, 0, 2)
    with pytest.raises(wasmtime.Trap) as info:
        batch.step(np.zeros((4, 8), dtype=np.float32))
    assert info.value.trap_code == wasmtime.TrapCode.UNREACHABLE


def test_hostile_membomb_cannot_grow_past_the_store_limit():
    limit = 4 * 1024 * 1024
    guest = Guest("hostile_membomb", memory_limit=limit)
    assert guest.init() == 0
    batch = Batch(guest, 4, 8, 0, 2)
    with pytest.raises(wasmtime.Trap) as info:
        batch.step(np.zeros((4, 8), dtype=np.float32))
    assert info.value.trap_code == wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS
    size = guest.memory.data_len(guest.store)
    assert limit - 16 * WASM_PAGE < size <= limit, "it grew right up to the limit, no further"


def test_hostile_wrong_abi_reports_99():
    guest = Guest("hostile_wrong_abi")
    assert guest.call("es_abi_version") == 99


def test_hostile_import_needs_a_forbidden_import():
    module = wasmtime.Module.from_file(ENGINE, str(module_path("hostile_import")))
    assert [(i.module, i.name) for i in module.imports] == [("wasi_snapshot_preview1", "fd_write")]
    with pytest.raises(wasmtime.WasmtimeError, match="fd_write"):
        Guest("hostile_import")  # only the "es" stubs are defined
    guest = Guest("hostile_import", extra_imports=True)  # otherwise a valid v1 module
    assert guest.init() == 0
    assert Batch(guest, 2, 8, 0, 2).step(np.zeros((2, 8), dtype=np.float32))[0] == 0
