"""Members of a placement (edges of a gateway, or gateways of a fleet), and the epoch.

A :class:`Membership` is an immutable value: every change (join, leave,
drain, undrain, down, up, weight) returns a new one whose ``epoch`` is one
higher. The epoch fences hand-over: a step of an older epoch is refused
(:mod:`edgeswarm.placement.handover`). Membership is configuration plus
heartbeats, decided by the gateway; nothing here is a consensus protocol.

States of a member::

    ACTIVE    owns agents by the placer, takes new ones
    DRAINING  keeps only its pinned agents; the rest move away (``edges drain``)
    DOWN      missed heartbeats for --edge-timeout: its agents restart elsewhere
              from their last checkpoint; pinned ones wait for it to come back
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from edgeswarm.placement.errors import UnknownNodeError

__all__ = ["Member", "MemberState", "Membership"]


class MemberState(enum.Enum):
    ACTIVE = "active"
    DRAINING = "draining"
    DOWN = "down"


@dataclass(frozen=True)
class Member:
    """One node that can own agents."""

    name: str
    """``edge_id`` of an edge, or a gateway's name."""
    weight: float = 1.0
    """Capacity: a member with weight 2 gets twice the agents of weight 1."""
    state: MemberState = MemberState.ACTIVE
    """Whether it takes agents (see the module docstring)."""


def _frozen(members: Mapping[str, Member]) -> Mapping[str, Member]:
    return MappingProxyType(dict(sorted(members.items())))


@dataclass(frozen=True)
class Membership:
    """Members by name and the placement epoch that this set of members defines."""

    members: Mapping[str, Member] = field(default_factory=lambda: _frozen({}))
    """Every member, by name (sorted)."""
    epoch: int = 0
    """Incremented on every change; fences hand-over."""

    def _changed(self, members: dict[str, Member]) -> Membership:
        return Membership(members=_frozen(members), epoch=self.epoch + 1)

    def _member(self, name: str) -> Member:
        try:
            return self.members[name]
        except KeyError:
            raise UnknownNodeError(
                f"{name!r} is not a member; members: {', '.join(self.members) or 'none'}"
            ) from None

    def joined(self, name: str, weight: float = 1.0) -> Membership:
        """``name`` joins ACTIVE (or comes back up with a new weight)."""
        if weight <= 0:
            raise ValueError(f"weight must be positive, got {weight}")
        current = self.members.get(name)
        if current == Member(name, weight, MemberState.ACTIVE):
            return self
        state = (
            current.state
            if current and current.state is MemberState.DRAINING
            else MemberState.ACTIVE
        )
        return self._changed({**self.members, name: Member(name, weight, state)})

    def left(self, name: str) -> Membership:
        """``name`` is no longer a member (graceful leave after its drain)."""
        self._member(name)
        return self._changed({k: v for k, v in self.members.items() if k != name})

    def with_state(self, name: str, state: MemberState) -> Membership:
        """``name`` drained, undrained (ACTIVE), down or up again."""
        member = self._member(name)
        if member.state is state:
            return self
        return self._changed({**self.members, name: replace(member, state=state)})

    def placing_weights(self) -> dict[str, float]:
        """Weights of the members the placer may give unpinned agents to (ACTIVE ones)."""
        return {m.name: m.weight for m in self.members.values() if m.state is MemberState.ACTIVE}

    def alive(self, name: str) -> bool:
        """Whether ``name`` is a member that is not DOWN (it can hand agents over)."""
        member = self.members.get(name)
        return member is not None and member.state is not MemberState.DOWN
