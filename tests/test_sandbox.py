"""The sandbox's own pieces with real wasmtime: the store's limits, the memory margin,
and every row of the failure table of :func:`guarded_call` (message and policy name)."""

from __future__ import annotations

import functools

import pytest
import wasmtime

from edgeswarm.edge.policy.deadline import EpochTicker, ticking
from edgeswarm.edge.policy.errors import (
    PolicyAbiError,
    PolicyDeadlineExceeded,
    PolicyError,
    PolicyFuelExhausted,
    PolicyMemoryExceeded,
    PolicyTrap,
)
from edgeswarm.edge.policy.sandbox import (
    TABLE_ELEMENTS_LIMIT,
    WASM_PAGE,
    FuelBudget,
    HostCallCap,
    guarded_call,
    limited_store,
    memory_near_limit,
)

LIMIT = 4 * WASM_PAGE


@pytest.fixture(scope="module")
def engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.consume_fuel = True
    return wasmtime.Engine(config)


def instantiate(engine: wasmtime.Engine, wat: str) -> tuple[wasmtime.Store, wasmtime.Instance]:
    store = limited_store(engine, LIMIT)
    return store, wasmtime.Instance(store, wasmtime.Module(engine, wat), [])


@pytest.mark.parametrize(
    ("wat", "refusal"),
    [
        (f"(module (table {TABLE_ELEMENTS_LIMIT + 1} funcref))", "exceeds table limits"),
        ("(module (table 1 funcref) (table 1 funcref))", "table count too high"),
        ("(module (memory 1) (memory 1))", "memory count too high"),
        (f"(module (memory {LIMIT // WASM_PAGE + 1}))", "exceeds memory limits"),
    ],
    ids=["table-elements", "two-tables", "two-memories", "memory-size"],
)
def test_a_store_admits_one_small_table_and_one_memory_within_the_limit(
    engine: wasmtime.Engine, wat: str, refusal: str
) -> None:
    with pytest.raises(wasmtime.WasmtimeError, match=refusal):
        instantiate(engine, wat)


def test_a_store_admits_what_fits_and_one_instance_only(engine: wasmtime.Engine) -> None:
    wat = f"(module (table {TABLE_ELEMENTS_LIMIT} funcref) (memory {LIMIT // WASM_PAGE}))"
    store, _ = instantiate(engine, wat)  # exactly at every limit: fine
    with pytest.raises(wasmtime.WasmtimeError, match="instance count too high"):
        wasmtime.Instance(store, wasmtime.Module(engine, "(module)"), [])


def test_memory_near_limit_is_within_a_sixteenth_and_at_least_a_page() -> None:
    big = 64 * 1024 * 1024  # margin: 1/16 = 4 MiB
    assert not memory_near_limit(big - big // 16, big)  # exactly the margin away: not near
    assert memory_near_limit(big - big // 16 + 1, big)
    assert memory_near_limit(big - big // 17, big)  # between 1/17 and 1/16 away: near
    small = 4 * WASM_PAGE  # 1/16 is less than a page: the margin is one page
    assert not memory_near_limit(small - WASM_PAGE, small)
    assert memory_near_limit(small - WASM_PAGE + 1, small)
    assert not memory_near_limit(0, small)


def test_fuel_budget_grows_per_agent() -> None:
    assert FuelBudget().for_agents(0) == 2_000_000  # ABI.md, "Fuel"
    assert FuelBudget(base=10, per_agent=3).for_agents(7) == 31


def _call(store: wasmtime.Store, instance: wasmtime.Instance, name: str, *args: int) -> int:
    memory = instance.exports(store).get("memory")

    def size() -> int:
        return memory.data_len(store) if isinstance(memory, wasmtime.Memory) else 0

    func = instance.exports(store)[name]
    assert isinstance(func, wasmtime.Func)
    return guarded_call(
        store, functools.partial(func, store), 50_000, *args, label=name, policy="probe",
        memory_size=size, memory_limit=LIMIT,
    )  # fmt: skip


MODULE = f"""(module
  (memory (export "memory") 1 {LIMIT // WASM_PAGE})
  (func (export "ok") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
  (func (export "spin") (result i32) (loop $l (br $l)) (i32.const 0))
  (func (export "crash") (result i32) unreachable)
  (func (export "fill_then_crash") (result i32)
    (drop (memory.grow (i32.const {LIMIT // WASM_PAGE - 1}))) unreachable)
  (func (export "float") (result f32) (f32.const 1.5))
)"""


@pytest.mark.parametrize(
    ("export", "args", "error", "message"),
    [
        ("spin", (), PolicyFuelExhausted, "spin ran out of fuel (budget 50000)"),
        ("fill_then_crash", (), PolicyMemoryExceeded,
         f"fill_then_crash trapped with memory at its limit ({LIMIT} bytes): "),
        ("crash", (), PolicyTrap, "crash trapped: "),
        ("ok", (), PolicyTrap, "ok failed: "),  # wasmtime refuses the call itself
        ("float", (), PolicyAbiError, "float returned 1.5, not an integer"),
    ],
)  # fmt: skip
def test_every_failure_becomes_a_typed_error_naming_the_export_and_the_policy(
    engine: wasmtime.Engine, export: str, args: tuple[int, ...], error: type, message: str
) -> None:
    store, instance = instantiate(engine, MODULE)
    assert _call(store, instance, "ok", 41) == 42
    with pytest.raises(error) as info:
        _call(store, instance, export, *args)
    assert type(info.value) is error
    assert isinstance(info.value, PolicyError)
    assert info.value.policy == "probe"
    assert str(info.value).startswith(f"policy 'probe': {message}")


def test_a_policy_error_from_an_import_is_raised_as_it_is(engine: wasmtime.Engine) -> None:
    raised = PolicyAbiError("the import said no", policy="importer")

    def host() -> int:
        raise raised

    store = limited_store(engine, LIMIT)
    func = wasmtime.Func(store, wasmtime.FuncType([], [wasmtime.ValType.i32()]), host)
    wat = """(module (import "es" "f" (func $f (result i32)))
      (func (export "go") (result i32) (call $f)))"""
    instance = wasmtime.Instance(store, wasmtime.Module(engine, wat), [func])
    with pytest.raises(PolicyError) as info:
        _call(store, instance, "go")
    assert info.value is raised


@pytest.mark.parametrize(
    ("deadline_s", "limit"), [(0.02, "20 ms"), (0.0015, "1.5 ms"), (None, "its deadline")]
)
def test_an_interrupted_call_ran_past_its_deadline(deadline_s: float | None, limit: str) -> None:
    """The epoch deadline interrupts a loop that still has fuel: the error
    names the export, the policy and the deadline in milliseconds."""
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    store, instance = instantiate(engine, MODULE)
    spin = instance.exports(store)["spin"]
    assert isinstance(spin, wasmtime.Func)
    ticker = EpochTicker(engine, period_s=0.001)
    ticker.hold()
    try:
        # ticking(): as WasmPolicy does around each call, so the epochs advance
        with pytest.raises(PolicyDeadlineExceeded) as info, ticking(ticker):
            guarded_call(
                store, functools.partial(spin, store), 10**10, label="spin", policy="looper",
                memory_size=lambda: 0, memory_limit=LIMIT, epoch_ticks=2, deadline_s=deadline_s,
            )  # fmt: skip
    finally:
        ticker.release()
    assert info.value.policy == "looper"
    assert str(info.value) == f"policy 'looper': spin ran past its deadline of {limit}"


def test_host_calls_grow_per_agent() -> None:
    assert HostCallCap(base=10, per_agent=3).for_agents(7) == 31
    assert HostCallCap(base=10, per_agent=3).for_agents(0) == 10


def test_a_host_import_charges_the_guest_its_fuel(engine: wasmtime.Engine) -> None:
    """``charge_fuel``: what a host import costs comes off the calling guest's fuel; a
    guest that cannot pay runs out of fuel there, with nothing left."""
    from edgeswarm.edge.policy.sandbox import charge_fuel

    store = limited_store(engine, LIMIT)
    cost: list[int | None] = [1_000]  # None: exactly what the guest has left

    def host(caller: wasmtime.Caller) -> int:
        left = wasmtime.Store.get_fuel(caller)  # type: ignore[arg-type]
        charge_fuel(caller, left if cost[0] is None else cost[0])
        return 7

    wat = """(module (import "es" "f" (func $f (result i32)))
      (func (export "run") (result i32) (call $f)))"""
    func = wasmtime.Func(store, wasmtime.FuncType([], [wasmtime.ValType.i32()]), host,
                         access_caller=True)  # fmt: skip
    instance = wasmtime.Instance(store, wasmtime.Module(engine, wat), [func])
    run = instance.exports(store)["run"]
    assert isinstance(run, wasmtime.Func)
    store.set_fuel(50_000)
    assert run(store) == 7
    used = 50_000 - store.get_fuel()
    assert 1_000 <= used < 1_100  # the charge plus a few instructions
    cost[0] = 10**6
    store.set_fuel(50_000)
    with pytest.raises(
        PolicyFuelExhausted, match=r"out of fuel in a host import \(cost 1000000, had 4"
    ):
        run(store)
    assert store.get_fuel() == 0
    cost[0] = None  # a guest that has exactly the cost pays it all and goes on
    store.set_fuel(50_000)
    assert run(store) == 7
    assert store.get_fuel() == 0
