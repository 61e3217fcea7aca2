"""One tick's observations as OBS_BATCH builders, ``batch_agents`` rows each.

Without placement every row was taken at the edge's tick. With placement each
agent has its own tick (``placed_agents.py``): rows are grouped by it and every
batch carries the tick its agents were stepped at, so the gateway's durable log
holds an ``(agent, tick)`` record per step: a tick stepped twice would show.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from edgeswarm.wire import ObservationBatch

from .agent_table import AgentTable

__all__ = ["BatchAt", "observation_batches"]

BatchAt = Callable[[int], ObservationBatch]
"""Builds the batch once the spool gives it its sequence number."""
Rows = slice | NDArray[np.intp]


def observation_batches(
    table: AgentTable, tick: int, step: int, agent_ticks: NDArray[np.uint64] | None = None
) -> list[BatchAt]:
    """Builders of this tick's batches: at most ``step`` rows each, of one tick each
    (``agent_ticks``: the tick each row is stepped at now; None: all at ``tick``)."""

    def batch_at(rows: Rows, at_tick: int) -> BatchAt:
        def at(seq: int) -> ObservationBatch:
            return ObservationBatch(
                seq=seq,
                tick=at_tick,
                agent_ids=table.ids[rows],
                observations=table.observations[rows],
                rewards=table.rewards[rows],
            )

        return at

    n = len(table)
    if agent_ticks is not None and n and agent_ticks.min() == agent_ticks.max():
        tick, agent_ticks = int(agent_ticks[0]), None  # one tick for all: plain slices
    if agent_ticks is None:
        return [batch_at(slice(start, min(start + step, n)), tick) for start in range(0, n, step)]
    values, inverse = np.unique(agent_ticks, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(values.shape[0] + 1))
    batches = []
    for group, at_tick in enumerate(values.tolist()):
        rows = order[bounds[group] : bounds[group + 1]]
        batches += [batch_at(rows[s : s + step], at_tick) for s in range(0, rows.shape[0], step)]
    return batches
