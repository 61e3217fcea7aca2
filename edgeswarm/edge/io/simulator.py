"""The built-in flocking world as one source+sink pair (``--io sim``, the default)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.world import FlockingWorld

from .base import AgentIO, IoContext, IoError


class SimulatorIO:
    """Senses from and acts on a :class:`FlockingWorld`; every observation is fresh."""

    def __init__(self, world: FlockingWorld) -> None:
        self.world = world

    async def start(self) -> None:
        return None

    def sense(self, table: AgentTable, fresh: NDArray[np.uint8], now: float) -> None:
        self.world.sense(table)
        fresh.fill(1)

    def act(self, table: AgentTable, fresh: NDArray[np.uint8]) -> None:
        self.world.apply(table.actions)

    async def close(self) -> None:
        return None


def open_simulator(argument: str, context: IoContext) -> AgentIO:
    """``sim`` (no argument): the flocking world seeded with the edge's seed."""
    if argument:
        raise IoError(f"--io sim takes no argument, got {argument!r}")
    io = SimulatorIO(FlockingWorld(context.agents, seed=context.seed))
    return AgentIO("sim", io, io)
