"""The agent table: every agent of an edge as columns of numpy arrays.

There is no Python object per agent. Row ``i`` of every column belongs to the
same agent. Policies run over contiguous groups of rows: keep the table sorted
by ``policy`` (see :meth:`AgentTable.sort_by_policy`) and every policy's agents
are one slice, so handing them to a policy copies nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

GroupRows = slice | NDArray[np.intp]
"""Rows of one policy group: a slice when contiguous, else an index array."""


def _check_column(
    name: str, array: NDArray[np.generic], dtype: type, shape: tuple[int, ...]
) -> None:
    if array.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, got {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")


class AgentTable:
    """Structure of arrays holding ``count`` agents.

    Columns (``n`` = number of agents):

    - ``ids``: uint32 ``(n,)``, the agents' ids
    - ``observations``: float32 ``(n, obs_dim)``
    - ``rewards``: float32 ``(n,)``
    - ``state``: float32 ``(n, state_dim)``, policy state carried between ticks
    - ``actions``: float32 ``(n, act_dim)``
    - ``policy``: uint16 ``(n,)``, index of the policy each agent runs
    - ``fresh``: uint8 ``(n,)``, 1 when the agent's observation is fresh this tick, 0
      when its source has been silent longer than ``--obs-max-age`` (``edgeswarm.edge.io``);
      a policy sees it as an extra last observation column when it asks for one (ABI.md)
    """

    def __init__(
        self,
        *,
        ids: NDArray[np.uint32],
        observations: NDArray[np.float32],
        rewards: NDArray[np.float32],
        state: NDArray[np.float32],
        actions: NDArray[np.float32],
        policy: NDArray[np.uint16],
        fresh: NDArray[np.uint8] | None = None,
    ) -> None:
        n = ids.shape[0] if ids.ndim == 1 else -1
        if n < 0:
            raise ValueError(f"ids must be one-dimensional, got shape {ids.shape}")
        for name, array in (("observations", observations), ("state", state), ("actions", actions)):
            if array.ndim != 2:
                raise ValueError(f"{name} must be two-dimensional, got shape {array.shape}")
        _check_column("ids", ids, np.uint32, (n,))
        _check_column("observations", observations, np.float32, (n, observations.shape[1]))
        _check_column("rewards", rewards, np.float32, (n,))
        _check_column("state", state, np.float32, (n, state.shape[1]))
        _check_column("actions", actions, np.float32, (n, actions.shape[1]))
        _check_column("policy", policy, np.uint16, (n,))
        if fresh is None:
            fresh = np.ones(n, dtype=np.uint8)
        _check_column("fresh", fresh, np.uint8, (n,))
        self.ids = ids
        self.observations = observations
        self.rewards = rewards
        self.state = state
        self.actions = actions
        self.policy = policy
        self.fresh = fresh

    @classmethod
    def create(
        cls, *, count: int, obs_dim: int, state_dim: int, act_dim: int, first_id: int = 0
    ) -> AgentTable:
        """A table of ``count`` agents with ids ``first_id, first_id + 1, ...``.

        Every other column is zero; every agent runs policy 0.
        """
        if count < 0 or obs_dim < 0 or state_dim < 0 or act_dim < 0:
            raise ValueError("count and dimensions must not be negative")
        if first_id < 0 or first_id + count > 2**32:
            raise ValueError("ids must fit in uint32")
        return cls(
            ids=np.arange(first_id, first_id + count, dtype=np.uint32),
            observations=np.zeros((count, obs_dim), dtype=np.float32),
            rewards=np.zeros(count, dtype=np.float32),
            state=np.zeros((count, state_dim), dtype=np.float32),
            actions=np.zeros((count, act_dim), dtype=np.float32),
            policy=np.zeros(count, dtype=np.uint16),
        )

    @property
    def count(self) -> int:
        """Number of agents (rows)."""
        return int(self.ids.shape[0])

    def __len__(self) -> int:
        return self.count

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def state_dim(self) -> int:
        return int(self.state.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by all columns together."""
        return sum(
            column.nbytes
            for column in (
                self.ids,
                self.observations,
                self.rewards,
                self.state,
                self.actions,
                self.policy,
                self.fresh,
            )
        )

    def groups(self) -> Mapping[int, GroupRows]:
        """Rows of each policy present in the table, by policy index, ascending.

        A policy whose agents are contiguous gets a ``slice`` (indexing with it
        is a view: zero copy); otherwise it gets a sorted index array (indexing
        copies). When the table is sorted by policy every group is a slice.
        """
        policy = self.policy
        n = policy.shape[0]
        if n == 0:
            return {}
        starts = np.flatnonzero(policy[1:] != policy[:-1]) + 1
        if np.all(policy[starts] > policy[starts - 1]):
            # Sorted: one run per policy.
            bounds = [0, *starts.tolist(), n]
            return {
                int(policy[bounds[k]]): slice(bounds[k], bounds[k + 1])
                for k in range(len(bounds) - 1)
            }
        order = np.argsort(policy, kind="stable")
        present = np.unique(policy)
        counts = np.bincount(policy, minlength=int(present[-1]) + 1)[present]
        splits = np.cumsum(counts)[:-1]
        groups: dict[int, GroupRows] = {}
        for index, rows in zip(present.tolist(), np.split(order, splits), strict=True):
            first, last = int(rows[0]), int(rows[-1])
            contiguous = last - first + 1 == rows.shape[0]
            groups[index] = slice(first, last + 1) if contiguous else rows
        return groups

    def replace_rows(
        self,
        keep: NDArray[np.intp],
        ids: NDArray[np.uint32],
        state: NDArray[np.float32],
        policy: NDArray[np.uint16],
        order: NDArray[np.intp],
    ) -> None:
        """Keep rows ``keep`` (in that order), append one row per id of ``ids`` (with its
        ``state`` and ``policy``; every other column zero, fresh), then reorder all by
        ``order``: new row ``i`` is row ``order[i]`` of kept-then-appended. Vectorised; the
        columns are new arrays (whoever holds the table sees them, not the old ones)."""
        added = ids.shape[0]

        def grown(column: NDArray[Any], extra: NDArray[Any] | None = None) -> NDArray[Any]:
            if extra is None:
                extra = np.zeros((added, *column.shape[1:]), dtype=column.dtype)
            return np.ascontiguousarray(np.concatenate([column[keep], extra])[order])

        self.ids = grown(self.ids, ids.astype(np.uint32))
        self.observations = grown(self.observations)
        self.rewards = grown(self.rewards)
        self.state = grown(self.state, state)
        self.actions = grown(self.actions)
        self.policy = grown(self.policy, policy.astype(np.uint16))
        self.fresh = grown(self.fresh, np.ones(added, dtype=np.uint8))

    def rows_of(self, ids: NDArray[np.uint32]) -> NDArray[np.intp]:
        """The row of each id (-1 for an id the table does not hold), vectorised."""
        order = np.argsort(self.ids, kind="stable")
        sorted_ids = self.ids[order]
        at = np.searchsorted(sorted_ids, ids)
        found = at < sorted_ids.shape[0]
        found[found] = sorted_ids[at[found]] == ids[found]
        rows = np.full(ids.shape[0], -1, dtype=np.intp)
        rows[found] = order[at[found]]
        return rows

    def sort_by_policy(self) -> NDArray[np.intp]:
        """Reorder the rows (stably) so each policy's agents are contiguous.

        Returns the permutation applied: new row ``i`` is old row ``order[i]``.
        Anything else indexed by row (e.g. a world's positions) must be
        reordered with it.
        """
        order = np.argsort(self.policy, kind="stable")
        for column in (
            self.ids,
            self.observations,
            self.rewards,
            self.state,
            self.actions,
            self.policy,
            self.fresh,
        ):
            column[...] = column[order]
        return order
