"""Replay a recording (``--io replay:PATH[?speed=recorded]``) as the observation source.

The recording is what ``edgeswarm log export`` wrote from a gateway's durable
log (:mod:`.recording`, kind ``observations``): one record per tick. By default
each edge tick takes the next record (as fast as the edge ticks: run the edge
with ``--tick-hz 0`` for as fast as possible); with ``speed=recorded`` each
tick takes the newest record due at the recorded pace (``t`` of the records),
skipping those a slow tick passed over. Agents in the tick's record are fresh,
agents missing from it stale. Actions go nowhere (the sink only counts them):
record them with ``edgeswarm edge --actions-out`` and compare with
``edgeswarm replay``. The edge stops when the recording ends.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.storage.recording import RecordingReader

from .actions_file import array_field
from .base import AgentIO, IoContext, IoError

__all__ = ["OBSERVATIONS_KIND", "ReplayIO", "open_replay"]

OBSERVATIONS_KIND = "observations"


class ReplayIO:
    """Source of recorded observations; sink that counts the actions it is given."""

    def __init__(self, path: Path, context: IoContext, *, recorded_speed: bool) -> None:
        self.path = path
        self.context = context
        self.recorded_speed = recorded_speed
        self.finished = False
        """True once the recording is exhausted (the edge then stops)."""
        self.ticks_replayed = 0
        self.skipped = 0
        self._reader: RecordingReader | None = None
        self._records: Iterator[dict[str, Any]] = iter(())
        self._pending: dict[str, Any] | None = None
        self._t0: float | None = None
        self._started_at = 0.0
        self._metrics = context.metrics
        self._in = context.metrics.messages_in.labels("replay")
        self._obs_in = context.metrics.observations_in.labels("replay")

    async def start(self) -> None:
        self._reader = RecordingReader(self.path, OBSERVATIONS_KIND)
        self._records = iter(self._reader)
        self._pending = next(self._records, None)
        self.finished = self._pending is None
        self._started_at = time.monotonic()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _advance(self) -> dict[str, Any] | None:
        record, self._pending = self._pending, next(self._records, None)
        self.finished = self._pending is None  # the edge stops after this tick
        return record

    def _next(self, now: float) -> dict[str, Any] | None:
        if self._pending is None:
            self.finished = True
            return None
        if not self.recorded_speed:
            return self._advance()
        if self._t0 is None:
            self._t0 = float(self._pending.get("t", 0.0))
        elapsed = now - self._started_at
        newest: dict[str, Any] | None = None
        while (
            self._pending is not None and float(self._pending.get("t", 0.0)) - self._t0 <= elapsed
        ):
            if newest is not None:
                self.skipped += 1
            newest = self._advance()
        return newest

    def sense(self, table: AgentTable, fresh: NDArray[np.uint8], now: float) -> None:
        record = self._next(now)
        if record is None:  # nothing due yet (recorded speed) or the end: all stale
            fresh.fill(0)
            return
        ids = array_field(record, "agent_ids", "<u4", 1)
        obs = array_field(record, "observations", "<f4", 2)
        rewards = array_field(record, "rewards", "<f4", 1)
        if obs.shape != (ids.shape[0], table.obs_dim) or rewards.shape != ids.shape:
            raise IoError(
                f"{self.path}: tick {record.get('tick')} has observations {obs.shape}, "
                f"the edge's table is {table.obs_dim} wide"
            )
        rows = ids.astype(np.int64) - self.context.first_agent_id
        valid = (rows >= 0) & (rows < len(table))
        rows = rows[valid]
        fresh.fill(0)
        table.observations[rows] = obs[valid]
        table.rewards[rows] = rewards[valid]
        fresh[rows] = 1
        self.ticks_replayed += 1
        self._in.inc()
        self._obs_in.inc(rows.size)

    def act(self, table: AgentTable, fresh: NDArray[np.uint8]) -> None:
        self._metrics.messages_out.labels("replay").inc(int(np.count_nonzero(fresh)))


def open_replay(argument: str, context: IoContext) -> AgentIO:
    """``replay:PATH`` or ``replay:PATH?speed=recorded``."""
    path_text, _, query = argument.partition("?")
    if not path_text:
        raise IoError("--io replay:PATH: which recording? (edgeswarm log export writes one)")
    if query not in ("", "speed=recorded", "speed=fast"):
        raise IoError(f"--io replay: unknown option {query!r} (speed=recorded or speed=fast)")
    path = Path(path_text)
    if not path.is_file():
        raise IoError(f"--io replay: {path}: no such file (edgeswarm log export writes one)")
    io = ReplayIO(path, context, recorded_speed=query == "speed=recorded")
    return AgentIO("replay", io, io)
