"""Suite "host_imports": what a host call costs, in time and in the guest's own fuel.

Fuel is how the sandbox bounds a step, so a host call must cost the fuel that
the same time buys in guest code. This suite measures both sides in one run:

- ``guest_loop`` (``ns_per_fuel``): a plain Wasm integer loop, the cheapest
  guest code per unit of fuel (the rate the prices are set against);
- ``flocking`` (``ns_per_fuel``): the shipped ``flocking`` policy over 10 000
  agents (real policy code, SIMD);
- one case per import (``ns_per_call``): a module calls it ``CALLS`` times in
  one ``es_step`` (minus the same loop without the call), through the real host:
  ``time_ns``; ``flag_get``, ``counter_add``, ``set_add`` (a new item each
  call) and ``model_dims`` on declared keys, the shared state being the
  edge's CRDT document (:class:`~edgeswarm.edge.state_link.DocumentSwarmState`,
  in memory); ``log`` with every message emitted (a clock that refills the
  rate limit) through the edge's JSON formatter to ``/dev/null``;
  ``random_fill`` of 16 bytes and ``random_fill_per_byte`` (64 KiB calls, per
  byte); ``model_infer`` of 1 row and ``model_infer_per_value`` (4096 rows of
  the 8 -> 1 ``anomaly`` model, per f32 read or written).

The prices in :data:`~edgeswarm.edge.policy.host_imports.HOST_IMPORTS` are
``ns_per_call / guest_loop ns_per_fuel``, rounded up to two significant digits
(ABI.md, "Fuel", has the table and the run it came from).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from edgeswarm.agents_wasm import module_path
from edgeswarm.bench import BenchResult
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.policy.host_imports import agent_logger
from edgeswarm.edge.policy.module_cache import ModuleCache
from edgeswarm.edge.policy.sandbox import FuelBudget, HostCallCap
from edgeswarm.edge.policy.wasm_host import WasmPolicy
from edgeswarm.edge.state_link import DocumentSwarmState
from edgeswarm.edge.world import FlockingWorld
from edgeswarm.models import ModelRegistry, write_anomaly_model
from edgeswarm.state import SwarmDocument

CALLS: Final = 2_000
"""Host calls per measured ``es_step``."""
ROUNDS: Final = 7
"""Measured steps per case (the median is reported)."""
LOOP_ITERATIONS: Final = 20_000_000
BYTES_PER_FILL: Final = 65_536
ROWS_PER_INFER: Final = 4_096

_DESCRIPTOR: Final = {
    "name": "cost",
    "obs_dim": 8,
    "state_dim": 0,
    "act_dim": 2,
    "counters": ["hits"],
    "sets": ["seen"],
    "flags": ["evade"],
    "models": ["anomaly"],
}
_STRINGS: Final = {"hits": 1024, "seen": 1040, "evade": 1056, "anomaly": 1072, "hello": 1088}
_ITEM: Final = 1104  # 8 bytes rewritten before each set_add
_SCRATCH: Final = 65_536  # one page in: random_fill and model_infer blocks

_IMPORTS: Final = {
    "log": "(func $f (param i32 i32 i32))",
    "time_ns": "(func $f (result i64))",
    "random_fill": "(func $f (param i32 i32))",
    "counter_add": "(func $f (param i32 i32 i64) (result i32))",
    "set_add": "(func $f (param i32 i32 i32 i32) (result i32))",
    "flag_get": "(func $f (param i32 i32) (result i32))",
    "model_infer": "(func $f (param i32 i32 i32 i32 i32) (result i32))",
    "model_dims": "(func $f (param i32 i32) (result i64))",
}


def _call(name: str, size: int) -> str:
    """One call of import ``name`` in WAT (``size``: bytes or rows where it applies)."""
    s = _STRINGS
    return {
        "log": f"(call $f (i32.const 1) (i32.const {s['hello']}) (i32.const 5))",
        "time_ns": "(drop (call $f))",
        "random_fill": f"(call $f (i32.const {_SCRATCH}) (i32.const {size}))",
        "counter_add": f"(drop (call $f (i32.const {s['hits']}) (i32.const 4) (i64.const 1)))",
        "set_add": (  # a new item every call: "a".."p" for each nibble of the loop index
            "".join(
                f"(i32.store8 (i32.const {_ITEM + k}) (i32.add (i32.const 97) (i32.and "
                f"(i32.shr_u (local.get $i) (i32.const {4 * k})) (i32.const 15))))"
                for k in range(8)
            )
            + f"(drop (call $f (i32.const {s['seen']}) (i32.const 4) "
            f"(i32.const {_ITEM}) (i32.const 8)))"
        ),
        "flag_get": f"(drop (call $f (i32.const {s['evade']}) (i32.const 5)))",
        "model_infer": (
            f"(drop (call $f (i32.const {s['anomaly']}) (i32.const 7) (i32.const {_SCRATCH}) "
            f"(i32.const {size}) (i32.const {_SCRATCH + 8 * 4 * ROWS_PER_INFER})))"
        ),
        "model_dims": f"(drop (call $f (i32.const {s['anomaly']}) (i32.const 7)))",
    }[name]


def cost_module(name: str | None, size: int = 16) -> bytes:
    """ABI v1 WAT whose ``es_step(n, ...)`` calls import ``name`` n times (None: no call)."""
    descriptor = json.dumps(_DESCRIPTOR)
    quoted = descriptor.replace('"', '\\"')
    strings = "".join(f'(data (i32.const {offset}) "{text}")' for text, offset in _STRINGS.items())
    imports = f'(import "es" "{name}" {_IMPORTS[name]})' if name else ""
    body = _call(name, size) if name else ""
    return f"""(module
  {imports}
  (memory (export "memory") 4)
  (data (i32.const 16) "{quoted}")
  {strings}
  (global $heap (mut i32) (i32.const 131072))
  (func (export "es_abi_version") (result i32) (i32.const 1))
  (func (export "es_describe") (result i64) (i64.const {(16 << 32) | len(descriptor)}))
  (func (export "es_alloc") (param $size i32) (result i32) (local $at i32)
    (local.set $at (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (global.get $heap) (local.get $size))
                                        (i32.const 15)) (i32.const -16)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.shr_u (i32.sub (global.get $heap)
        (i32.shl (memory.size) (i32.const 16))) (i32.const 16)) (i32.const 1))))))
    (local.get $at))
  (func (export "es_init") (param i32 i32) (result i32) (i32.const 0))
  (func (export "es_step") (param $n i32) (param i32 i32 i32) (result i32)
    (local $i i32) (local $x i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      {body}
      (local.set $x (i32.add (i32.mul (local.get $x) (i32.const 31)) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (if (i32.eq (local.get $x) (i32.const 7)) (then (return (i32.const 1))))
    (i32.const 0))
)""".encode()


class _Clock:
    """A clock that jumps a second per read, so the log rate limit never drops a message."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        self.now += 1_000_000_000
        return self.now


def _policy(
    wasm: bytes, cache: ModuleCache, models: ModelRegistry | None, clock: Callable[[], int]
) -> WasmPolicy:
    return WasmPolicy(
        wasm,
        cache=cache,
        models=models,
        swarm=DocumentSwarmState(SwarmDocument("bench")),
        fuel=FuelBudget(base=10**15, per_agent=0),
        host_calls=HostCallCap(base=10**9, per_agent=0),
        deadline_s=None,
        clock=clock,
    )


def step_seconds(policy: WasmPolicy, n: int) -> tuple[float, int]:
    """Median seconds of the cost module's ``es_step(n)`` over :data:`ROUNDS`, and its fuel."""
    policy.call("es_step", n, 0, 0, 0)  # warm-up
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        policy.call("es_step", n, 0, 0, 0)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), policy.fuel.base - policy.fuel_left


@contextmanager
def _json_logs_to_devnull() -> Iterator[None]:
    """The edge's JSON log formatter on ``edgeswarm.edge.agent``, writing to /dev/null."""
    from edgeswarm.telemetry.logs import configure_logging

    root = logging.getLogger("edgeswarm")
    saved = (root.handlers[:], root.level, root.propagate)
    with open(os.devnull, "w") as sink:
        configure_logging("DEBUG", process="bench")
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)
        agent_logger.disabled = False
        try:
            yield
        finally:
            root.handlers[:], root.level, root.propagate = saved


def run() -> list[BenchResult]:
    results: list[BenchResult] = []
    cache = ModuleCache(cache_dir=None)

    def record(case: str, metric: str, value: float, unit: str) -> None:
        results.append(BenchResult("host_imports", case, metric, value, unit))

    with ModelRegistry() as models:
        models.register_bytes("anomaly", write_anomaly_model())
        with _policy(cost_module(None), cache, models, _Clock()) as empty:
            loop_s, loop_fuel = step_seconds(empty, LOOP_ITERATIONS)
            baseline_s, _ = step_seconds(empty, CALLS)
        record("guest_loop", "ns_per_fuel", loop_s * 1e9 / loop_fuel, "ns/fuel")

        table = AgentTable.create(count=10_000, obs_dim=8, state_dim=2, act_dim=2)
        FlockingWorld(10_000, seed=7).sense(table)
        with WasmPolicy(module_path("flocking"), cache=cache, deadline_s=None) as flocking:
            samples = []
            for _ in range(ROUNDS + 1):
                start = time.perf_counter()
                flocking.step(table.observations, table.state, table.actions)
                samples.append(time.perf_counter() - start)
            used = flocking.fuel.for_agents(10_000) - flocking.fuel_left
        record("flocking", "ns_per_fuel", statistics.median(samples[1:]) * 1e9 / used, "ns/fuel")

        def per_call(name: str, size: int = 16, calls: int = CALLS) -> float:
            with _policy(cost_module(name, size), cache, models, _Clock()) as policy:
                seconds, _ = step_seconds(policy, calls)
            return max(0.0, seconds - baseline_s * calls / CALLS) * 1e9 / calls

        with _json_logs_to_devnull():
            record("log", "ns_per_call", per_call("log"), "ns/call")
        for name in ("time_ns", "flag_get", "counter_add", "set_add", "model_dims"):
            record(name, "ns_per_call", per_call(name), "ns/call")
        fill_16 = per_call("random_fill", 16)
        record("random_fill", "ns_per_call", fill_16, "ns/call")
        fill_big = per_call("random_fill", BYTES_PER_FILL, calls=200)
        record(
            "random_fill_per_byte",
            "ns_per_unit",
            (fill_big - fill_16) / (BYTES_PER_FILL - 16),
            "ns/byte",
        )
        infer_1 = per_call("model_infer", 1, calls=500)
        record("model_infer", "ns_per_call", infer_1, "ns/call")
        infer_big = per_call("model_infer", ROWS_PER_INFER, calls=50)
        values = (ROWS_PER_INFER - 1) * (8 + 1)
        record("model_infer_per_value", "ns_per_unit", (infer_big - infer_1) / values, "ns/value")
    return results
