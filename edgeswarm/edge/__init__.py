"""Edge compute core: the agent table, the world, and Wasm policies stepping it."""

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.policy.abi import ABI_VERSION, Descriptor
from edgeswarm.edge.policy.errors import (
    EdgeError,
    PolicyAbiError,
    PolicyError,
    PolicyFuelExhausted,
    PolicyLoadError,
    PolicyMemoryExceeded,
    PolicyTrap,
)
from edgeswarm.edge.policy.module_cache import CompiledModule, ModuleCache
from edgeswarm.edge.policy.sandbox import DEFAULT_MEMORY_LIMIT, FuelBudget
from edgeswarm.edge.policy.set import Policy, PolicyFault, PolicySet, PolicySpec
from edgeswarm.edge.policy.swarm_state import LocalSwarmState, SwarmSnapshot, SwarmState
from edgeswarm.edge.policy.wasm_host import WasmPolicy
from edgeswarm.edge.world import FlockingWorld

__all__ = [
    "ABI_VERSION",
    "DEFAULT_MEMORY_LIMIT",
    "AgentTable",
    "CompiledModule",
    "Descriptor",
    "EdgeError",
    "FlockingWorld",
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
