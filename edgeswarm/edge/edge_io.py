"""The edge's observation source and action sink, opened from its configuration (``--io``)."""

from __future__ import annotations

import asyncio

from .agent_table import AgentTable
from .config import EdgeConfig
from .io import AgentIO, IoContext, IoMetrics, ObservationSource, open_io
from .io.simulator import SimulatorIO
from .world import FlockingWorld

__all__ = ["UNPACED_IDLE_TICK_S", "open_edge_io", "wait_unpaced"]

UNPACED_IDLE_TICK_S = 0.1
"""Unpaced, with a source that signals data: the longest wait for it before ticking anyway."""


def open_edge_io(
    config: EdgeConfig, table: AgentTable, metrics: IoMetrics
) -> tuple[AgentIO, FlockingWorld | None]:
    """The source and sink ``config.io`` names, and the simulated world when it is ``sim``
    (None for any other source). Raises ``IoError`` for an address that cannot be opened."""
    if config.io == "sim":
        world = FlockingWorld(config.initial_agents, seed=config.seed)
        simulator = SimulatorIO(world)
        return AgentIO("sim", simulator, simulator), world
    context = IoContext(
        agents=config.agents,
        first_agent_id=config.first_agent_id,
        obs_dim=table.obs_dim,
        act_dim=table.act_dim,
        seed=config.seed,
        tick_hz=config.tick_hz,
        obs_max_age_s=config.obs_max_age_s,
        data_dir=config.data_dir,
        metrics=metrics,
    )
    return open_io(config.io, context), None


async def wait_unpaced(source: ObservationSource) -> None:
    """Between unpaced ticks (``--tick-hz 0``): a source that says when data arrived (MQTT)
    is waited for, so ticks follow the sensors (bounded: a tick at least every 0.1 s)."""
    wait_data = getattr(source, "wait_data", None)
    if wait_data is None:
        await asyncio.sleep(0)
    else:
        await wait_data(UNPACED_IDLE_TICK_S)
