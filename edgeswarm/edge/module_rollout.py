"""One edge's part of a rollout: which of its agents run the new version, and what it saw.

The decisions are the registry's sans-I/O :class:`~edgeswarm.registry.Rollout`;
this class only applies them to the agent table and feeds it what happened:

- at start, the new version is loaded beside the old one (:meth:`PolicySet.add`
  with ``like``: same state layout, else :class:`PolicyStateLayoutError` and
  nothing changes);
- :meth:`EdgeRollout.assign` points each agent of the two slots at the slot of
  the version :meth:`Rollout.version_for` gives it (by its id, stable); an
  agent's state stays in its row, so moving it keeps its state;
- :meth:`EdgeRollout.after_tick` reports the tick: the new slot's agents are
  its agent-ticks; all of them count as faults when the slot was quarantined
  (a trap, fuel, a deadline, a bad action: the step's state writes were
  discarded, so no agent lost its state). An ``advance`` or a ``rollback``
  re-assigns at once, before the next tick.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from edgeswarm.registry import Rollout, RolloutEvent, RolloutPhase, share_point

from .agent_table import AgentTable
from .policy.set import PolicySet, PolicySpec


class EdgeRollout:
    """Applies one :class:`Rollout` to one edge's table and policy set."""

    def __init__(
        self,
        rollout: Rollout,
        *,
        table: AgentTable,
        policies: PolicySet,
        old_slot: int,
        new_spec: PolicySpec,
        edge_labels: frozenset[str] = frozenset(),
    ) -> None:
        self.rollout = rollout
        self.table = table
        self.policies = policies
        self.old_slot = old_slot
        self.new_slot = policies.add(new_spec, like=old_slot)
        self.edge_labels = edge_labels
        self._points: NDArray[np.float64] = np.array(
            [share_point(int(agent)) for agent in table.ids], dtype=np.float64
        )
        self.events: list[RolloutEvent] = []
        """Everything the rollout decided on this edge, in order."""
        self.assign()

    def _members(self) -> NDArray[np.bool_]:
        policy = self.table.policy
        members: NDArray[np.bool_] = (policy == self.old_slot) | (policy == self.new_slot)
        return members

    def assign(self) -> None:
        """Point every agent of the two slots at the version it runs now."""
        members = self._members()
        on_new = members & (self._points < self.rollout.share)
        if not self.rollout.edge_takes_part(self.edge_labels):
            on_new[:] = False
        self.table.policy[members] = self.old_slot
        self.table.policy[on_new] = self.new_slot

    @property
    def agents_on_new(self) -> int:
        return int(np.count_nonzero(self.table.policy == self.new_slot))

    def after_tick(self) -> list[RolloutEvent]:
        """Report the tick just stepped; re-assign on ``advance`` or ``rollback``."""
        agent_ticks = self.agents_on_new
        faults = agent_ticks if self.policies.is_quarantined(self.new_slot) else 0
        events = self.rollout.observe(agent_ticks, faults)
        if events:
            self.events.extend(events)
            self.assign()
        return events

    def rollback(self) -> RolloutEvent:
        """The operator's rollback: every agent back on the old version now."""
        event = self.rollout.rollback()
        self.events.append(event)
        self.assign()
        return event

    @property
    def done(self) -> bool:
        return self.rollout.phase is not RolloutPhase.STAGING
