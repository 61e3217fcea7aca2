"""The heavy-lane imports of a policy: ask for a heavy model, read its results later.

``heavy_request`` marks, with a byte mask over the step's ``n`` agents, which
agents need heavy model ``id`` this tick, and points at their input rows;
``heavy_results`` hands back what arrived since (ABI.md, "Heavy inference").
Both go through a :class:`HeavyLaneSeam`, the edge's lane
(``edgeswarm.edge.heavy_lane.HeavyRequests``) or, in tests, an in-memory one.
Agents are named by their index in the policy's block (0 .. n-1), the only
name a policy knows; the seam maps them to agent ids.

Every pointer is bounds-checked like the other imports (exact arithmetic);
results keep their order of arrival; a result row is an index, a status
(:data:`STATUS_OK`, :data:`STATUS_TIMEOUT`, :data:`STATUS_REJECTED`,
:data:`STATUS_FAILED`: the wire's ``InferStatus`` values) and ``out_dim``
floats (zeros unless OK).
"""

from __future__ import annotations

from typing import Final, Protocol

import numpy as np
import wasmtime
from numpy.typing import NDArray

from edgeswarm.edge.policy.sandbox import charge_fuel

__all__ = [
    "HEAVY_FUEL",
    "HEAVY_FUEL_PER_VALUE",
    "MAX_HEAVY_DIM",
    "STATUS_FAILED",
    "STATUS_OK",
    "STATUS_REJECTED",
    "STATUS_TIMEOUT",
    "HeavyLaneSeam",
    "HostView",
    "heavy_request",
    "heavy_results",
]

STATUS_OK: Final = 0
STATUS_TIMEOUT: Final = 1
STATUS_REJECTED: Final = 2
STATUS_FAILED: Final = 3
MAX_HEAVY_DIM: Final = 1024
"""Largest ``in_dim`` / ``out_dim`` (the wire's limit on columns)."""
HEAVY_FUEL: Final = 300_000
"""Fixed price of each heavy import: ``model_infer``'s measured one (ABI.md, "Fuel")."""
HEAVY_FUEL_PER_VALUE: Final = 14
"""Price per value moved: each mask byte and f32 read, each result value written."""


class HeavyLaneSeam(Protocol):
    """What the heavy imports need of the edge's lane."""

    def request(
        self, slot: int, model: str, agents: NDArray[np.int32], rows: NDArray[np.float32]
    ) -> int:
        """Queue ``rows`` (one per agent index of policy ``slot``'s block); returns how many."""
        ...

    def results(
        self, slot: int, model: str, cap: int, out_dim: int
    ) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float32]]:
        """Up to ``cap`` results: agent indices, statuses, ``(k, out_dim)`` outputs."""
        ...


class HostView(Protocol):
    """What the heavy imports use of a policy's ``HostContext``."""

    heavy: HeavyLaneSeam | None
    slot: int
    step_agents: int

    def declared(self, caller: wasmtime.Caller, kind: str, ptr: int, length: int) -> str | None: ...

    def guest_bytes(
        self, caller: wasmtime.Caller, ptr: int, length: int
    ) -> NDArray[np.uint8] | None: ...


def heavy_request(
    ctx: HostView,
    caller: wasmtime.Caller,
    id_ptr: int,
    id_len: int,
    mask_ptr: int,
    in_ptr: int,
    n: int,
    in_dim: int,
) -> int:
    """``0..n``: agents queued; ``-1`` model not declared / no lane; ``-2`` bad arguments."""
    model = ctx.declared(caller, "heavy", id_ptr, id_len)
    if model is None or ctx.heavy is None:
        return -1
    if n < 0 or not 1 <= in_dim <= MAX_HEAVY_DIM or n > ctx.step_agents:
        return -2
    if n == 0:
        return 0
    mask = ctx.guest_bytes(caller, mask_ptr, n)
    inputs = ctx.guest_bytes(caller, in_ptr, n * in_dim * 4)
    if mask is None or inputs is None:
        return -2
    agents = np.flatnonzero(mask).astype(np.int32)
    charge_fuel(caller, (n + agents.size * in_dim) * HEAVY_FUEL_PER_VALUE)
    if agents.size == 0:
        return 0
    rows = inputs.view(np.float32).reshape(n, in_dim)[agents]  # fancy indexing: a copy
    return ctx.heavy.request(ctx.slot, model, agents, rows)


def heavy_results(
    ctx: HostView,
    caller: wasmtime.Caller,
    id_ptr: int,
    id_len: int,
    idx_ptr: int,
    status_ptr: int,
    out_ptr: int,
    cap: int,
    out_dim: int,
) -> int:
    """``0..cap``: results written; ``-1`` model not declared / no lane; ``-2`` bad arguments."""
    model = ctx.declared(caller, "heavy", id_ptr, id_len)
    if model is None or ctx.heavy is None:
        return -1
    if cap < 0 or not 1 <= out_dim <= MAX_HEAVY_DIM:
        return -2
    if cap == 0:
        return 0
    index_block = ctx.guest_bytes(caller, idx_ptr, cap * 4)
    status_block = ctx.guest_bytes(caller, status_ptr, cap * 4)
    out_block = ctx.guest_bytes(caller, out_ptr, cap * out_dim * 4)
    if index_block is None or status_block is None or out_block is None:
        return -2
    agents, statuses, outputs = ctx.heavy.results(ctx.slot, model, cap, out_dim)
    count = int(agents.shape[0])
    charge_fuel(caller, count * (out_dim + 2) * HEAVY_FUEL_PER_VALUE)
    if count:
        index_block.view(np.int32)[:count] = agents
        status_block.view(np.int32)[:count] = statuses
        out_block.view(np.float32).reshape(cap, out_dim)[:count] = outputs
    return count
