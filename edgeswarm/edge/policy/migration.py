"""Running ``es_migrate``: agents' state from another version's layout into a module's own.

ABI.md, "Hot swap and state layout". :func:`migrate_state` is the host's side of one
call: it copies the old rows into a block it allocates in the module
(``es_alloc``: the ABI has no free, so a migration of ``n`` agents costs the module
``4 n old_state_dim`` bytes for good, once per call), calls
``es_migrate(n, old_state_dim, old_ptr, state_ptr)`` under the limits of an
``es_step`` over ``n`` agents, and hands back a copy of what the module wrote in its
state block, checked. Nothing outside the module's memory changes here: whether the
rows are committed to the agent table (all of them) is
:class:`~edgeswarm.edge.policy.set.PolicySet`'s decision.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.policy.abi import MIGRATE_FUNC
from edgeswarm.edge.policy.errors import PolicyAbiError
from edgeswarm.edge.policy.wasm_host import WasmPolicy

_F32 = np.dtype(np.float32)


def migrate_state(policy: WasmPolicy, old_state: NDArray[np.float32]) -> NDArray[np.float32]:
    """``policy``'s ``es_migrate`` over ``n = len(old_state)`` agents whose state has
    ``old_state.shape[1]`` f32 each; their state in ``policy``'s layout, ``(n, state_dim)``.

    Raises a :class:`~edgeswarm.edge.policy.errors.PolicyError`: what the call raised (a
    trap, fuel, the deadline, the host-call cap), or :class:`PolicyAbiError` for a
    nonzero status or a NaN or infinity written.
    """
    if old_state.dtype != _F32 or old_state.ndim != 2:
        raise ValueError(f"old_state must be 2-d float32, got {old_state.dtype} {old_state.shape}")
    n, old_dim = old_state.shape
    if n == 0:
        return np.empty((0, policy.state_dim), _F32)
    policy.reserve(n)
    old_at = policy.alloc(n * old_dim * 4)
    policy.write_memory(old_at, np.ascontiguousarray(old_state).tobytes())
    status = policy.call_for_agents(MIGRATE_FUNC, n, old_dim, old_at, policy.offsets[1])
    if status != 0:
        raise PolicyAbiError(
            f"es_migrate from {old_dim} state f32 returned status {status}",
            policy=policy.name,
            status=status,
        )
    migrated = policy.state_block[:n].copy()
    if not np.isfinite(migrated).all():
        raise PolicyAbiError("es_migrate wrote a NaN or infinite state value", policy=policy.name)
    return migrated
