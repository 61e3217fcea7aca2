"""From an edge's configuration to its running policies: modules, models, agent groups.

A policy is named by a built-in module name (``boids``, ``flocking``, ...) or
by a path to a ``.wasm``/``.wat`` file a user published. The agents are split
into equal contiguous groups, one per policy, so each policy is called once
per tick over one slice of the table. A module that fails to load, for any
reason, is quarantined from the start (its agents get the safe action) and the
edge still runs every other policy. Each call into a policy gets the step
deadline :func:`step_deadline_s` derives from the tick period.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

from edgeswarm.agents_wasm import module_names, module_path
from edgeswarm.models import ModelRegistry

from ..agent_table import AgentTable
from ..config import EdgeConfig
from .compiler import CompileLimits
from .module_cache import ModuleCache
from .sandbox import FuelBudget, HostCallCap
from .set import Fallback, PolicyFault, PolicySet, PolicySpec
from .swarm_state import SwarmState

UNPACED_TICK_S = 0.1
"""Tick period the default step deadline assumes when the edge is not paced (``tick_hz`` 0)."""


def step_deadline_s(config: EdgeConfig) -> float:
    """Wall-clock limit of one policy call: ``--policy-deadline-ms``, or half the
    tick period shared equally by the policies."""
    if config.policy_deadline_ms is not None:
        return config.policy_deadline_ms / 1e3
    period = 1.0 / config.tick_hz if config.tick_hz > 0 else UNPACED_TICK_S
    return period / 2 / max(1, len(config.policies))


def compile_limits(config: EdgeConfig) -> CompileLimits:
    """The edge's bounds on modules and on compiling them."""
    return CompileLimits(
        max_module_bytes=int(config.module_max_mb * 1024 * 1024),
        max_functions=config.module_max_functions,
        memory_bytes=config.compile_memory_mb * 1024 * 1024,
        timeout_s=config.compile_timeout_s,
    )


def resolve_module(policy: str) -> Path:
    """Path of a built-in module by name, or of a user's module file.

    Raises ``FileNotFoundError`` naming the built-in modules when neither exists.
    """
    if policy in module_names():
        return module_path(policy)
    path = Path(policy)
    if path.suffix in (".wasm", ".wat") and path.is_file():
        return path
    raise FileNotFoundError(
        f"no policy {policy!r}: not a built-in module ({', '.join(module_names())}) "
        "nor a .wasm/.wat file"
    )


def assign_groups(table: AgentTable, groups: int) -> list[int]:
    """Split the table's agents into ``groups`` contiguous groups; returns their sizes."""
    base, extra = divmod(len(table), groups)
    sizes = [base + (1 if slot < extra else 0) for slot in range(groups)]
    table.policy[:] = np.repeat(np.arange(groups, dtype=np.uint16), sizes)
    return sizes


def load_models(paths: tuple[Path, ...]) -> ModelRegistry:
    """A registry with each ``.tflite`` file under its stem (``anomaly.tflite`` -> ``anomaly``)."""
    registry = ModelRegistry()
    try:
        for path in paths:
            registry.register_path(path.stem, path)
    except BaseException:
        registry.close()
        raise
    return registry


def open_policies(
    config: EdgeConfig,
    table: AgentTable,
    *,
    models: ModelRegistry,
    swarm: SwarmState | None = None,
    on_fault: Callable[[PolicyFault], None] | None = None,
) -> PolicySet:
    """Load ``config.policies`` over ``table`` (agents grouped), sandboxed and cached on disk."""
    if not config.policies:
        raise ValueError("an edge needs at least one policy")
    deadline = step_deadline_s(config)
    specs = [
        PolicySpec(
            resolve_module(policy),
            name=Path(policy).stem,
            fuel=FuelBudget(per_agent=config.policy_fuel_per_agent),
            host_calls=HostCallCap(per_agent=config.policy_host_calls_per_agent),
            memory_limit=config.policy_memory_mb * 1024 * 1024,
            deadline_s=deadline,
        )
        for policy in config.policies
    ]
    assign_groups(table, len(specs))
    cache = ModuleCache(
        cache_dir=config.module_cache_dir or config.data_dir / "modules",
        limits=compile_limits(config),
    )
    return PolicySet(
        specs,
        fallback=cast(Fallback, config.policy_fallback),  # PolicySet refuses other values
        seed=config.seed,
        cache=cache,
        swarm=swarm,
        models=models,
        on_fault=on_fault,
    )
