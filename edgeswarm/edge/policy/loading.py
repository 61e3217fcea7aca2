"""From policy names to running policies: modules, models, agent groups.

A policy is named by a built-in module name (``boids``, ``flocking``, ...) or
by a path to a ``.wasm``/``.wat`` file a user published. The agents are split
into equal contiguous groups, one per policy, so each policy is called once
per tick over one slice of the table. A module that fails to load, for any
reason, is quarantined from the start (its agents get the safe action) and the
edge still runs every other policy. Each call into a policy gets the step
deadline :func:`step_deadline_s` derives from the tick period.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import wasmtime

from edgeswarm.agents_wasm import example_names, module_path
from edgeswarm.models import ModelRegistry

from ..agent_table import AgentTable
from .compiler import CompileLimits
from .errors import PolicyLoadError
from .heavy import HeavyLaneSeam
from .module_cache import ModuleCache
from .sandbox import FuelBudget, HostCallCap
from .set import Fallback, PolicyFault, PolicySet, PolicySpec
from .swarm_state import SwarmState

UNPACED_TICK_S = 0.1
"""Tick period the default step deadline assumes when the edge is not paced (``tick_hz`` 0)."""


def step_deadline_s(*, deadline_ms: float | None, tick_hz: float, policies: int) -> float:
    """Wall-clock limit of one policy call: ``deadline_ms`` (``--policy-deadline-ms``)
    if given, else half the tick period shared equally by the policies."""
    if deadline_ms is not None:
        return deadline_ms / 1e3
    period = 1.0 / tick_hz if tick_hz > 0 else UNPACED_TICK_S
    return period / 2 / max(1, policies)


def resolve_module(policy: str) -> Path:
    """Path of a built-in module by name, or of a user's module file.

    The built-ins are the working examples; the hostile test fixtures that ship
    beside them are not offered (tests load them by path). Raises
    ``FileNotFoundError`` naming the built-in modules when neither exists.
    """
    if policy in example_names():
        return module_path(policy)
    path = Path(policy)
    if path.suffix in (".wasm", ".wat") and path.is_file():
        return path
    raise FileNotFoundError(
        f"no policy {policy!r}: not a built-in module ({', '.join(example_names())}) "
        "nor a .wasm/.wat file"
    )


def check_source(policy: str, *, max_bytes: int) -> Path:
    """:func:`resolve_module`, and for a ``.wat`` file of at most ``max_bytes``, that it
    parses: a typo in an operator's own source refuses the start instead of running
    the edge with that policy quarantined. Raises ``FileNotFoundError`` or
    :class:`PolicyLoadError` saying where the text is wrong. (Larger files, and
    everything a module does once it parses, stay the loader's: a ``load`` fault.)
    """
    path = resolve_module(policy)
    if path.suffix == ".wat" and path.stat().st_size <= max_bytes:
        try:
            wasmtime.wat2wasm(path.read_text(errors="replace"))
        except wasmtime.WasmtimeError as exc:
            lines = str(exc).strip().splitlines()
            where = re.search(r"-->\s*\S*?:(\d+):(\d+)", str(exc))
            at = f" at line {where[1]}, column {where[2]}" if where else ""
            raise PolicyLoadError(
                f"{path} is not valid WebAssembly text: {lines[0] if lines else exc}{at}"
            ) from None
    return path


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
    policies: Sequence[str],
    table: AgentTable,
    *,
    fallback: str,
    fuel_per_agent: int,
    host_calls_per_agent: int,
    memory_mb: int,
    deadline_s: float,
    compile_limits: CompileLimits,
    cache_dir: Path | None,
    seed: int,
    models: ModelRegistry,
    swarm: SwarmState | None = None,
    heavy: HeavyLaneSeam | None = None,
    on_fault: Callable[[PolicyFault], None] | None = None,
) -> PolicySet:
    """Load ``policies`` (built-in names or files) over ``table``, the agents split into
    one group per policy, each sandboxed, compiled modules cached in ``cache_dir``."""
    if not policies:
        raise ValueError("an edge needs at least one policy")
    specs = [
        PolicySpec(
            resolve_module(policy),
            name=Path(policy).stem,
            fuel=FuelBudget(per_agent=fuel_per_agent),
            host_calls=HostCallCap(per_agent=host_calls_per_agent),
            memory_limit=memory_mb * 1024 * 1024,
            deadline_s=deadline_s,
        )
        for policy in policies
    ]
    assign_groups(table, len(specs))
    return PolicySet(
        specs,
        fallback=cast(Fallback, fallback),  # PolicySet refuses other values
        seed=seed,
        cache=ModuleCache(cache_dir=cache_dir, limits=compile_limits),
        swarm=swarm,
        models=models,
        heavy=heavy,
        on_fault=on_fault,
    )
