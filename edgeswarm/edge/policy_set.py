"""The policies of an edge, by index, stepped over an agent table.

``table.policy[i]`` is the index (in this set) of the policy agent ``i``
runs. Each tick every policy is called once with all its agents. A policy
that fails with a :class:`~edgeswarm.edge.errors.PolicyError` is
quarantined: its agents get zero actions from then on (their state is left
as it was), one line is logged on ``edgeswarm.edge``, and the other policies
keep running.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.errors import PolicyError
from edgeswarm.resource import Resource

logger = logging.getLogger("edgeswarm.edge")


class Policy(Protocol):
    """What a :class:`PolicySet` needs from a policy (:class:`WasmPolicy` is one)."""

    name: str

    def step(
        self,
        obs: NDArray[np.float32],
        state: NDArray[np.float32],
        out_actions: NDArray[np.float32],
    ) -> None: ...

    def close(self) -> None: ...


class PolicySet(Resource):
    """Owns its policies (closes them on :meth:`close`); index = position."""

    def __init__(self, policies: Iterable[Policy]) -> None:
        self._policies: list[Policy] = list(policies)
        self._quarantined: dict[int, PolicyError] = {}

    def __len__(self) -> int:
        return len(self._policies)

    def __getitem__(self, index: int) -> Policy:
        return self._policies[index]

    @property
    def policies(self) -> Sequence[Policy]:
        return tuple(self._policies)

    @property
    def quarantined(self) -> dict[int, PolicyError]:
        """Quarantined policy indices and the error that put each there."""
        return dict(self._quarantined)

    @property
    def quarantined_count(self) -> int:
        """Number of quarantined policies."""
        return len(self._quarantined)

    def is_quarantined(self, index: int) -> bool:
        return index in self._quarantined

    def step(self, table: AgentTable) -> None:
        """Write ``table.actions`` (and update ``table.state``) for every agent."""
        for index, rows in table.groups().items():
            if index >= len(self._policies):
                raise ValueError(
                    f"agents refer to policy {index}, but the set has {len(self._policies)}"
                )
            if index in self._quarantined:
                table.actions[rows] = 0.0
                continue
            policy = self._policies[index]
            contiguous = isinstance(rows, slice)
            # A slice indexes as a view: the policy writes into the table directly.
            obs = table.observations[rows]
            state = table.state[rows]
            actions = table.actions[rows] if contiguous else np.empty_like(table.actions[rows])
            try:
                policy.step(obs, state, actions)
            except PolicyError as exc:
                self._quarantined[index] = exc
                logger.warning("policy %d (%s) quarantined: %s", index, policy.name, exc)
                table.actions[rows] = 0.0
                continue
            if not contiguous:
                table.state[rows] = state
                table.actions[rows] = actions

    def close(self) -> None:
        """Close every policy. Idempotent."""
        policies, self._policies = self._policies, []
        for policy in policies:
            policy.close()
