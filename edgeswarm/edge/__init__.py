"""Edge compute core: the agent table, the world, and Wasm policies stepping it."""

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.errors import (
    EdgeError,
    PolicyAbiError,
    PolicyError,
    PolicyFuelExhausted,
    PolicyLoadError,
    PolicyTrap,
)
from edgeswarm.edge.policy_set import Policy, PolicySet
from edgeswarm.edge.wasm_host import FuelBudget, ModuleCache, WasmPolicy
from edgeswarm.edge.world import FlockingWorld

__all__ = [
    "AgentTable",
    "EdgeError",
    "FlockingWorld",
    "FuelBudget",
    "ModuleCache",
    "Policy",
    "PolicyAbiError",
    "PolicyError",
    "PolicyFuelExhausted",
    "PolicyLoadError",
    "PolicySet",
    "PolicyTrap",
    "WasmPolicy",
]
