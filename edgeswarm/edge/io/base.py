"""What an observation source and an action sink are, and what they are given.

A **source** fills the agent table's observation columns (``observations`` and
``rewards``) for the agents it serves, in one vectorised call per tick, and
says which agents' observations are fresh (``fresh``: one byte per agent, 1 =
fresh). A **sink** takes the action columns after the policies stepped, in one
call per tick; it must not act for an agent whose ``fresh`` byte is 0. Neither
ever handles one Python object per agent.

Both may need the event loop (a broker connection): :meth:`start` is awaited
before the first tick and :meth:`close` after the last. One object may be both
(:class:`~edgeswarm.edge.io.simulator.SimulatorIO`); :class:`AgentIO` is the
pair an ``--io`` address opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.errors import EdgeswarmError

from .metrics import IoMetrics

__all__ = [
    "ActionSink",
    "AgentIO",
    "IoContext",
    "IoError",
    "ObservationSource",
]


class IoError(EdgeswarmError):
    """An ``--io`` address that cannot be opened (unknown kind, bad option, missing file)."""


@runtime_checkable
class ObservationSource(Protocol):
    """Fills observations for the agents it serves, once per tick."""

    async def start(self) -> None:
        """Connect, open files: whatever must happen before the first tick."""

    def sense(self, table: AgentTable, fresh: NDArray[np.uint8], now: float) -> None:
        """Write ``table.observations`` and ``table.rewards`` and set ``fresh`` (per row:
        1 = this row's observation is fresh, 0 = stale: the policy sees it, the sink
        does not act). ``now`` is ``time.monotonic()``."""

    async def close(self) -> None:
        """Release what :meth:`start` took. Idempotent."""


@runtime_checkable
class ActionSink(Protocol):
    """Takes the actions of the agents it serves, once per tick."""

    async def start(self) -> None:
        """Connect, open files: whatever must happen before the first tick."""

    def act(self, table: AgentTable, fresh: NDArray[np.uint8]) -> None:
        """Deliver ``table.actions`` of the rows whose ``fresh`` byte is 1. Must not
        block: queue what cannot go now (bounded) and count what is dropped."""

    async def close(self) -> None:
        """Release what :meth:`start` took. Idempotent."""


@dataclass(frozen=True, kw_only=True)
class IoContext:
    """What an ``--io`` kind is told about the edge it serves."""

    agents: int
    first_agent_id: int
    obs_dim: int
    act_dim: int
    seed: int = 0
    tick_hz: float = 10.0
    obs_max_age_s: float | None = None
    """An agent whose observation is older than this is stale (None: never)."""
    data_dir: Path = Path(".")
    metrics: IoMetrics = field(default_factory=IoMetrics)


@dataclass
class AgentIO:
    """The source and the sink an ``--io`` address opened (often one object)."""

    kind: str
    source: ObservationSource
    sink: ActionSink

    async def start(self) -> None:
        await self.source.start()
        if not self._one_object:
            await self.sink.start()

    async def close(self) -> None:
        await self.source.close()
        if not self._one_object:
            await self.sink.close()

    @property
    def _one_object(self) -> bool:
        return self.sink is self.source  # type: ignore[comparison-overlap]
