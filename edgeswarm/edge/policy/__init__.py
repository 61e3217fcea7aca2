"""The Wasm host of an edge, as one wing: everything a policy module meets.

``abi`` (exports, descriptor), ``sandbox`` (store limits, fuel, traps mapped
to typed faults), ``module_cache`` (compiled modules, on disk), ``host_imports``
(the one linker table), ``wasm_host`` (one policy instance), ``set`` (the
policies of an edge, by slot, with quarantine), ``loading`` (from names to a
running set), ``swarm_state`` (the shared state as policies see it),
``errors`` (the policy error tree); ``boids`` and ``reference`` are the numpy
references the example modules are checked against.
"""

from .abi import ABI_VERSION, Descriptor
from .errors import (
    EdgeError,
    PolicyAbiError,
    PolicyError,
    PolicyFuelExhausted,
    PolicyLoadError,
    PolicyMemoryExceeded,
    PolicyTrap,
)
from .module_cache import CompiledModule, ModuleCache
from .sandbox import DEFAULT_MEMORY_LIMIT, FuelBudget
from .set import Policy, PolicyFault, PolicySet, PolicySpec
from .swarm_state import LocalSwarmState, SwarmSnapshot, SwarmState
from .wasm_host import WasmPolicy

__all__ = [
    "ABI_VERSION",
    "DEFAULT_MEMORY_LIMIT",
    "CompiledModule",
    "Descriptor",
    "EdgeError",
    "FuelBudget",
    "LocalSwarmState",
    "ModuleCache",
    "Policy",
    "PolicyAbiError",
    "PolicyError",
    "PolicyFault",
    "PolicyFuelExhausted",
    "PolicyLoadError",
    "PolicyMemoryExceeded",
    "PolicySet",
    "PolicySpec",
    "PolicyTrap",
    "SwarmSnapshot",
    "SwarmState",
    "WasmPolicy",
]
