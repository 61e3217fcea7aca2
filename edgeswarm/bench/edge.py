"""Suite "edge": the boids policy over 10 000 agents, three ways, side by side.

Cases (all the same policy on the same observations, taken from a
:class:`~edgeswarm.edge.world.FlockingWorld`):

- ``wasm``: one :class:`~edgeswarm.edge.wasm_host.WasmPolicy` ``step`` per tick
- ``numpy``: :func:`~edgeswarm.edge.policies.boids_numpy`
- ``actor``: a list of :class:`~edgeswarm.edge.policies.BoidActor`, one per agent

Metric ``steps_per_s``: agent-steps per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from edgeswarm.agents_wasm import module_path
from edgeswarm.bench import BenchResult
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.policies import BoidActor, boids_numpy, run_actors
from edgeswarm.edge.wasm_host import WasmPolicy
from edgeswarm.edge.world import ACTION_DIM, OBSERVATION_DIM, FlockingWorld

AGENTS = 10_000
CASE_SECONDS = 1.5
WARMUP_SECONDS = 0.2


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


def run(*, agents: int = AGENTS, seconds: float = CASE_SECONDS) -> list[BenchResult]:
    table = _observed_table(agents)
    results: list[BenchResult] = []

    def record(case: str, rate: float) -> None:
        results.append(BenchResult("edge", case, "steps_per_s", rate, "agent_steps/s"))

    with WasmPolicy(module_path("boids")) as policy:

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
    return results
