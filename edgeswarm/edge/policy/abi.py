"""ABI v1 of edgeswarm policy modules: constants, export checks, the descriptor.

The contract is ``edgeswarm/agents_wasm/ABI.md``; this module is its host-side
reading, as pure functions over a compiled ``wasmtime.Module`` and over the
descriptor bytes. Imports are checked against the linker table in
:mod:`edgeswarm.edge.policy.host_imports`.

Every refusal is a :class:`~edgeswarm.edge.policy.errors.PolicyLoadError` whose
message names what is wrong (the export, the key, the bound).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import wasmtime

from edgeswarm.agents_wasm.abi_v1 import ABI_VERSION as ABI_VERSION  # re-exported
from edgeswarm.agents_wasm.abi_v1 import MIGRATE_FUNC as MIGRATE_FUNC  # re-exported
from edgeswarm.agents_wasm.abi_v1 import OPTIONAL_FUNCS as OPTIONAL_FUNCS  # re-exported
from edgeswarm.agents_wasm.abi_v1 import REQUIRED_FUNCS as REQUIRED_FUNCS  # re-exported
from edgeswarm.edge.policy.errors import PolicyLoadError
from edgeswarm.edge.policy.swarm_state import key_problem

MAX_DIM: Final = 4096
"""Largest obs/state/act dimension a module may declare."""

MAX_DESCRIPTOR_BYTES: Final = 65_536
"""Largest descriptor ``es_describe`` may point at."""

MAX_NAME_CHARS: Final = 64
MAX_KEY_BYTES: Final = 128
MAX_SET_ITEM_BYTES: Final = 256
"""Largest item ``set_add`` accepts."""


@dataclass(frozen=True)
class Descriptor:
    """What a policy declares about itself through ``es_describe``."""

    name: str
    """1-64 characters."""
    obs_dim: int
    """f32 per agent read by ``es_step`` (1-4096)."""
    state_dim: int
    """f32 per agent of state carried between ticks (0-4096)."""
    act_dim: int
    """f32 per agent written by ``es_step`` (1-4096)."""
    counters: frozenset[str] = frozenset()
    """Shared counters the policy may add to."""
    sets: frozenset[str] = frozenset()
    """Shared sets the policy may add to."""
    flags: frozenset[str] = frozenset()
    """Shared flags the policy may read."""
    models: frozenset[str] = frozenset()
    """Light models the policy may call."""
    heavy: frozenset[str] = frozenset()
    """Heavy models the policy may ask the gateway's inference nodes for."""
    act_bounds: tuple[tuple[float, float], ...] | None = None
    """``(low, high)`` per action column, inclusive, when the descriptor declares them."""

    @property
    def dims(self) -> tuple[int, int, int]:
        return (self.obs_dim, self.state_dim, self.act_dim)


def type_names(types: Any) -> tuple[str, ...]:
    """``("i32", "i64", ...)`` for a sequence of wasmtime ``ValType``."""
    return tuple(str(t) for t in types)


def describe_type(ty: Any) -> str:
    """Readable extern type: ``func (i32, i32) -> (i32)``, ``memory``, ``global``..."""
    if isinstance(ty, wasmtime.FuncType):
        params, results = type_names(ty.params), type_names(ty.results)
        return f"func ({', '.join(params)}) -> ({', '.join(results)})"
    for kind, name in (
        (wasmtime.MemoryType, "memory"),
        (wasmtime.TableType, "table"),
        (wasmtime.GlobalType, "global"),
    ):
        if isinstance(ty, kind):
            return name
    return type(ty).__name__


def check_exports(module: wasmtime.Module, name: str) -> None:
    """Refuse a module without ``memory`` and the ABI v1 functions, or whose optional
    function (``es_migrate``) has another type, naming each problem."""
    exports = {export.name: export.type for export in module.exports}
    problems: list[str] = []
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        problems.append("missing export 'memory' (a memory)")
    for func, (params, results) in {**REQUIRED_FUNCS, **OPTIONAL_FUNCS}.items():
        ty = exports.get(func)
        if ty is None:
            if func in REQUIRED_FUNCS:
                problems.append(f"missing export {func!r}")
        elif not isinstance(ty, wasmtime.FuncType):
            problems.append(f"export {func!r} is a {describe_type(ty)}, not a function")
        elif (type_names(ty.params), type_names(ty.results)) != (params, results):
            problems.append(
                f"export {func!r} has type {describe_type(ty)}, expected "
                f"func ({', '.join(params)}) -> ({', '.join(results)})"
            )
    if problems:
        raise PolicyLoadError("; ".join(problems), policy=name)


def split_location(packed: int) -> tuple[int, int]:
    """``(ptr, len)`` from ``es_describe``'s ``(ptr << 32) | len`` (an i64, maybe negative)."""
    packed &= 0xFFFF_FFFF_FFFF_FFFF
    return packed >> 32, packed & 0xFFFF_FFFF


def _dim(raw: dict[str, Any], key: str, low: int, name: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyLoadError(f"descriptor {key!r} must be an integer, got {value!r}", policy=name)
    if not low <= value <= MAX_DIM:
        raise PolicyLoadError(
            f"descriptor {key!r} = {value} is out of range {low}..{MAX_DIM}", policy=name
        )
    return value


def _keys(raw: dict[str, Any], key: str, name: str, *, shared: bool) -> frozenset[str]:
    """The declared names under ``key``; ``shared``: they name shared state (ABI.md rule)."""
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise PolicyLoadError(f"descriptor {key!r} must be a list of strings", policy=name)
    for item in value:
        if not isinstance(item, str) or not 1 <= len(item.encode("utf-8")) <= MAX_KEY_BYTES:
            raise PolicyLoadError(
                f"descriptor {key!r} holds {item!r}; keys are strings of 1..{MAX_KEY_BYTES} bytes",
                policy=name,
            )
        problem = key_problem(item) if shared else None
        if problem is not None:
            raise PolicyLoadError(f"descriptor {key!r}: {problem}", policy=name)
    return frozenset(value)


_F32_MAX: Final = float(np.finfo(np.float32).max)


def _bound_pair(value: Any) -> tuple[float, float] | None:
    """``(low, high)`` from ``[low, high]`` (finite f32 numbers, low <= high), else None."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
        return None
    try:
        low, high = (float(v) for v in value)
    except OverflowError:  # an integer beyond any float
        return None
    if not (math.isfinite(low) and math.isfinite(high)) or max(abs(low), abs(high)) > _F32_MAX:
        return None
    return (low, high) if low <= high else None


def _act_bounds(
    raw: dict[str, Any], act_dim: int, name: str
) -> tuple[tuple[float, float], ...] | None:
    """``act_bounds``: one ``[low, high]`` for every column, or one per column."""
    value = raw.get("act_bounds")
    if value is None:
        return None
    single = _bound_pair(value)
    if single is not None:
        return (single,) * act_dim
    if isinstance(value, list) and len(value) == act_dim:
        pairs = [_bound_pair(item) for item in value]
        if all(pair is not None for pair in pairs):
            return tuple(pair for pair in pairs if pair is not None)
    raise PolicyLoadError(
        f"descriptor 'act_bounds' must be [low, high] or {act_dim} such pairs "
        f"(finite float32 numbers, low <= high), got {value!r}",
        policy=name,
    )


def parse_descriptor(data: bytes, name: str) -> Descriptor:
    """Check and decode the descriptor JSON (unknown keys are ignored)."""
    if len(data) > MAX_DESCRIPTOR_BYTES:
        raise PolicyLoadError(
            f"descriptor is {len(data)} bytes, at most {MAX_DESCRIPTOR_BYTES}", policy=name
        )
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise PolicyLoadError(f"descriptor is not UTF-8 JSON: {exc}", policy=name) from exc
    except RecursionError:
        raise PolicyLoadError("descriptor JSON is nested too deeply", policy=name) from None
    if not isinstance(raw, dict):
        raise PolicyLoadError("descriptor must be a JSON object", policy=name)
    policy_name = raw.get("name")
    if not isinstance(policy_name, str) or not 1 <= len(policy_name) <= MAX_NAME_CHARS:
        raise PolicyLoadError(
            f"descriptor 'name' must be a string of 1..{MAX_NAME_CHARS} characters, "
            f"got {policy_name!r}",
            policy=name,
        )
    act_dim = _dim(raw, "act_dim", 1, name)
    return Descriptor(
        name=policy_name,
        obs_dim=_dim(raw, "obs_dim", 1, name),
        state_dim=_dim(raw, "state_dim", 0, name),
        act_dim=act_dim,
        counters=_keys(raw, "counters", name, shared=True),
        sets=_keys(raw, "sets", name, shared=True),
        flags=_keys(raw, "flags", name, shared=True),
        models=_keys(raw, "models", name, shared=False),
        heavy=_keys(raw, "heavy", name, shared=False),
        act_bounds=_act_bounds(raw, act_dim, name),
    )
