"""Assignment: the owner of every swarm agent under one membership, vectorised.

``assign`` places unpinned agents with the placer over the ACTIVE members and
pinned agents on their pinned edge (which never changes by the ring: a pinned
agent is bound to a device there). A pinned agent whose edge is DOWN or not a
member is *unowned* (owner ``-1``) until the edge returns; so is every agent
when no member is ACTIVE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgeswarm.placement.membership import Membership
from edgeswarm.placement.ring import DEFAULT_PLACER, build_placer

__all__ = ["UNOWNED", "Assignment", "assign"]

UNOWNED = -1
"""Owner index of an agent no member can run now."""


@dataclass(frozen=True)
class Assignment:
    """Who owns which agent at one placement epoch."""

    epoch: int
    """The membership epoch this assignment was computed for."""
    nodes: tuple[str, ...]
    """Names that ``owners`` indexes (every member, sorted)."""
    ids: NDArray[np.uint32]
    """Agent ids, sorted ascending."""
    owners: NDArray[np.int32]
    """Index into ``nodes`` per agent, or :data:`UNOWNED`."""

    def owner_names(self) -> NDArray[np.str_]:
        """The owner's name per agent ('' for unowned)."""
        names = np.array((*self.nodes, ""), dtype=np.str_)
        return names[self.owners]

    def ids_of(self, node: str) -> NDArray[np.uint32]:
        """Agent ids owned by ``node`` (empty if it owns none or is not a member)."""
        if node not in self.nodes:
            return np.empty(0, dtype=np.uint32)
        owned: NDArray[np.uint32] = self.ids[self.owners == self.nodes.index(node)]
        return owned

    def counts(self) -> dict[str, int]:
        """Agents per member (members with none included)."""
        owned = self.owners[self.owners >= 0]
        per_node = np.bincount(owned, minlength=len(self.nodes))
        return {name: int(n) for name, n in zip(self.nodes, per_node, strict=True)}

    def owner_of(self, agent_id: int) -> str | None:
        at = int(np.searchsorted(self.ids, agent_id))
        if at == self.ids.shape[0] or int(self.ids[at]) != agent_id:
            return None
        owner = int(self.owners[at])
        return None if owner == UNOWNED else self.nodes[owner]


def _sorted_unique(ids: NDArray[np.uint32]) -> NDArray[np.uint32]:
    """``ids`` ascending without repeats; no work when they already are (the store's order)."""
    if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return ids
    ordered = np.sort(ids)
    keep = np.ones(ordered.shape, dtype=np.bool_)
    keep[1:] = ordered[1:] != ordered[:-1]
    unique: NDArray[np.uint32] = ordered[keep]
    return unique


def assign(
    ids: NDArray[np.integer],
    membership: Membership,
    *,
    pins: Mapping[int, str] | None = None,
    placer: str = DEFAULT_PLACER,
) -> Assignment:
    """Owners of ``ids`` (any order, unique) under ``membership``; ``pins``: agent id -> edge."""
    sorted_ids = _sorted_unique(np.asarray(ids, dtype=np.uint32))
    nodes = tuple(membership.members)
    owners = np.full(sorted_ids.shape, UNOWNED, dtype=np.int32)
    weights = membership.placing_weights()
    if weights and sorted_ids.size:
        ring = build_placer(placer, weights)
        to_member = np.array([nodes.index(name) for name in ring.nodes], dtype=np.int32)
        owners = to_member[ring.lookup(sorted_ids)]
    if pins:
        pin_ids = np.fromiter(pins.keys(), dtype=np.uint32, count=len(pins))
        at = np.searchsorted(sorted_ids, pin_ids)
        present = at < sorted_ids.shape[0]
        present[present] = sorted_ids[at[present]] == pin_ids[present]
        pinned_to = np.array(
            [nodes.index(edge) if membership.alive(edge) else UNOWNED for edge in pins.values()],
            dtype=np.int32,
        )
        owners[at[present]] = pinned_to[present]
    return Assignment(epoch=membership.epoch, nodes=nodes, ids=sorted_ids, owners=owners)
