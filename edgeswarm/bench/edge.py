"""Suite "edge": the boids policy three ways, agent memory, and policy cold start.

Cases (the policy ones all run the same boids policy on the same observations,
taken from a :class:`~edgeswarm.edge.world.FlockingWorld` of 10 000 agents):

- ``wasm`` (``steps_per_s``): one :class:`~edgeswarm.edge.policy.wasm_host.WasmPolicy`
  ``step`` per tick (``edgeswarm/agents_wasm`` module ``boids``, ABI v1)
- ``numpy`` (``steps_per_s``): :func:`~edgeswarm.edge.policy.boids.boids_numpy`
- ``actor`` (``steps_per_s``): one :class:`~edgeswarm.edge.policy.boids.BoidActor`
  per agent
- ``agent_table`` (``bytes_per_agent``): bytes of the
  :class:`~edgeswarm.edge.agent_table.AgentTable` columns plus the world's
  per-agent arrays, at 1 000 000 agents, divided by 1 000 000
- ``module_cache`` (``cold_start_ms``): median time from a fresh
  :class:`~edgeswarm.edge.policy.module_cache.ModuleCache` (process engine already
  made) over a warm on-disk cache to a policy ready to step 10 000 agents:
  verify and deserialize the artifact, instantiate, describe, ``es_init``,
  allocate the blocks
- ``module_compile`` (``cold_start_ms``): the same without an on-disk cache,
  so the module is compiled from its bytes

Targets (issue "Wasm agent runtime"): wasm >= 0.3x numpy and >= 50x actor,
<= 200 B/agent, cache cold start <= 2 ms.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeswarm.agents_wasm import module_path
from edgeswarm.bench import BenchResult
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.policy.boids import BoidActor, boids_numpy, run_actors
from edgeswarm.edge.policy.module_cache import ModuleCache, shared_engine
from edgeswarm.edge.policy.wasm_host import WasmPolicy
from edgeswarm.edge.world import ACTION_DIM, OBSERVATION_DIM, FlockingWorld

AGENTS = 10_000
TABLE_AGENTS = 1_000_000
CASE_SECONDS = 1.5
WARMUP_SECONDS = 0.2
COLD_START_REPEATS = 25


def _rate(step: Callable[[], None], agents: int, seconds: float) -> float:
    """Agent-steps per second of ``step`` over about ``seconds`` after a warm-up."""
    deadline = time.perf_counter() + WARMUP_SECONDS
    while time.perf_counter() < deadline:
        step()
    ticks = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        step()
        ticks += 1
        now = time.perf_counter()
    return agents * ticks / (now - start)


def _observed_table(agents: int) -> AgentTable:
    world = FlockingWorld(count=agents, seed=7)
    table = AgentTable.create(
        count=agents, obs_dim=OBSERVATION_DIM, state_dim=2, act_dim=ACTION_DIM
    )
    actions = np.zeros((agents, ACTION_DIM), dtype=np.float32)
    state = np.zeros((agents, 2), dtype=np.float32)
    for _ in range(10):  # let the flock settle a little
        world.sense(table)
        boids_numpy(table.observations, state, actions)
        world.apply(actions, 0.1)
    world.sense(table)
    return table


def bytes_per_agent(agents: int = TABLE_AGENTS) -> float:
    """Agent table plus world per-agent arrays, in bytes per agent."""
    table = AgentTable.create(
        count=agents, obs_dim=OBSERVATION_DIM, state_dim=2, act_dim=ACTION_DIM
    )
    world = FlockingWorld(count=agents, seed=1)
    per_agent = [
        value
        for value in vars(world).values()
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == agents
    ]
    return (table.nbytes + sum(array.nbytes for array in per_agent)) / agents


def cold_start_ms(cache_dir: Path | None, *, agents: int = AGENTS) -> float:
    """Median ms from a fresh ModuleCache to a boids policy ready to step ``agents``."""
    path = module_path("boids")
    shared_engine()
    if cache_dir is not None:
        ModuleCache(cache_dir=cache_dir).load(path.read_bytes())  # warm the disk entry
    samples = []
    for _ in range(COLD_START_REPEATS):
        start = time.perf_counter()
        cache = ModuleCache(cache_dir=cache_dir)
        policy = WasmPolicy(path, cache=cache)
        policy.reserve(agents)
        samples.append(time.perf_counter() - start)
        policy.close()
    return statistics.median(samples) * 1e3


def run(*, agents: int = AGENTS, seconds: float = CASE_SECONDS) -> list[BenchResult]:
    table = _observed_table(agents)
    results: list[BenchResult] = []

    def record(case: str, rate: float) -> None:
        results.append(BenchResult("edge", case, "steps_per_s", rate, "agent_steps/s"))

    with WasmPolicy(module_path("boids"), cache=ModuleCache(cache_dir=None)) as policy:

        def wasm_step() -> None:
            policy.step(table.observations, table.state, table.actions)

        record("wasm", _rate(wasm_step, agents, seconds))

    table.state[:] = 0.0
    record(
        "numpy",
        _rate(lambda: boids_numpy(table.observations, table.state, table.actions), agents, seconds),
    )

    actors = [BoidActor() for _ in range(agents)]
    record("actor", _rate(lambda: run_actors(actors, table), agents, seconds))

    results.append(
        BenchResult("edge", "agent_table", "bytes_per_agent", bytes_per_agent(), "B/agent")
    )
    with tempfile.TemporaryDirectory(prefix="edgeswarm-bench-") as directory:
        cache_ms = cold_start_ms(Path(directory) / "modules")
    results.append(BenchResult("edge", "module_cache", "cold_start_ms", cache_ms, "ms"))
    compile_ms = cold_start_ms(None)
    results.append(BenchResult("edge", "module_compile", "cold_start_ms", compile_ms, "ms"))
    return results
