"""The newest observation of every agent a message source serves, and when it came.

Sans-I/O: messages are decoded elsewhere (:mod:`.mqtt_codec`) and put here as
columns; once per tick :meth:`ObservationInbox.fill` copies everything into the
agent table (one vectorised copy) and computes the fresh mask. An agent never
heard from is stale; one heard from is stale once its newest observation is
older than ``max_age_s`` (never, when it is None). A stale agent's row keeps
its last observation (zeros before the first).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable

__all__ = ["ObservationInbox"]


class ObservationInbox:
    """One row per agent (ids ``first_id .. first_id + agents - 1``)."""

    def __init__(self, *, agents: int, first_id: int, obs_dim: int) -> None:
        self.first_id = first_id
        self.observations = np.zeros((agents, obs_dim), dtype=np.float32)
        self.rewards = np.zeros(agents, dtype=np.float32)
        self.updated_at = np.full(agents, -np.inf, dtype=np.float64)
        self.updated = np.zeros(agents, dtype=np.bool_)
        """Rows with a new observation since the last :meth:`take_updated`."""

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    def rows_of(self, agent_ids: NDArray[np.integer]) -> tuple[NDArray[np.intp], int]:
        """Rows of the ids this inbox serves, and how many ids it does not serve."""
        rows = agent_ids.astype(np.int64) - self.first_id
        valid = (rows >= 0) & (rows < self.observations.shape[0])
        unknown = int(valid.size - np.count_nonzero(valid))
        if unknown:
            rows = rows[valid]
        return rows.astype(np.intp), unknown

    def put_one(
        self, row: int, observation: NDArray[np.float32], reward: float, now: float
    ) -> None:
        """One agent's observation (row from :meth:`rows_of` or checked by the caller)."""
        self.observations[row] = observation
        self.rewards[row] = reward
        self.updated_at[row] = now
        self.updated[row] = True

    def put_rows(
        self,
        rows: NDArray[np.intp],
        observations: NDArray[np.float32],
        rewards: NDArray[np.float32] | None,
        now: float,
    ) -> None:
        """Many agents' observations at once (rows from :meth:`rows_of`)."""
        self.observations[rows] = observations
        self.rewards[rows] = 0.0 if rewards is None else rewards
        self.updated_at[rows] = now
        self.updated[rows] = True

    def take_updated(self) -> NDArray[np.bool_]:
        """Rows updated since the last call (a copy), then forget them."""
        updated = self.updated.copy()
        self.updated.fill(False)
        return updated

    def fill(
        self, table: AgentTable, fresh: NDArray[np.uint8], now: float, max_age_s: float | None
    ) -> int:
        """Copy every row into ``table`` and set ``fresh``; returns the stale count."""
        table.observations[...] = self.observations
        table.rewards[...] = self.rewards
        if max_age_s is None:
            is_fresh = self.updated_at > -np.inf
        else:
            is_fresh = (now - self.updated_at) <= max_age_s
        fresh[...] = is_fresh
        return int(fresh.shape[0] - np.count_nonzero(is_fresh))
