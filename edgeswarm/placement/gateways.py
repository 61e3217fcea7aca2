"""Edges over gateways: the same placers, keyed by edge name.

Several gateways split the fleet's edges by the ring: each edge belongs to
the gateway :func:`owner_gateways` names among the ACTIVE gateways of a
:class:`Membership` (members are gateway names from configuration, ``--peer``;
a gateway whose peer link is down is DOWN). When a gateway dies its edges go
to the next points on the ring; when it returns exactly those edges come back
(minimal movement, the ring's property). An edge name is hashed once with
xxh64 to a 64-bit key; the placers take it from there.

:class:`GatewayRing` is one gateway's live view: itself and the peers whose
link is up, each with the address the gateways reach it at; it answers, per
edge, "mine" or "that gateway's, there" (a REDIRECT's contents).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgeswarm.placement.hashing import node_seed
from edgeswarm.placement.membership import Membership
from edgeswarm.placement.ring import DEFAULT_PLACER, Placer, build_placer

__all__ = ["GatewayRing", "RingPeer", "name_keys", "owner_gateways"]


def name_keys(names: Sequence[str]) -> NDArray[np.uint64]:
    """A 64-bit key per name (xxh64), for placers that take integer ids."""
    return np.fromiter((node_seed(name) for name in names), dtype=np.uint64, count=len(names))


def owner_gateways(
    edge_ids: Sequence[str], gateways: Membership, *, placer: str = DEFAULT_PLACER
) -> dict[str, str | None]:
    """The gateway each edge belongs to (None when no gateway is ACTIVE)."""
    weights = gateways.placing_weights()
    if not weights:
        return dict.fromkeys(edge_ids)
    ring = build_placer(placer, weights)
    owners = ring.lookup(name_keys(edge_ids))
    return {edge: ring.nodes[int(i)] for edge, i in zip(edge_ids, owners, strict=True)}


@dataclass(frozen=True)
class RingPeer:
    """A live peer gateway of the ring and where it is reached."""

    gateway_id: str
    host: str
    port: int


class GatewayRing:
    """This gateway's view of the gateway ring: itself plus the peers that are up.

    Membership is configuration (``--peer``), liveness is the peer link: a peer
    is in the ring while its link is up (:meth:`peer_up`, :meth:`peer_down`). Each
    gateway decides from its own view; views differ for a moment after a change,
    which the edge's bound on REDIRECTs in a row absorbs.
    """

    def __init__(self, gateway_id: str, *, placer: str = DEFAULT_PLACER) -> None:
        self.gateway_id = gateway_id
        self._placer_kind = placer
        self._peers: dict[str, RingPeer] = {}
        self._placer: Placer | None = None

    @property
    def members(self) -> tuple[str, ...]:
        """The gateways in the ring now (this one included), sorted."""
        return tuple(sorted({self.gateway_id, *self._peers}))

    def peer_up(self, peer: RingPeer) -> bool:
        """A peer's link is up; True when the ring changed."""
        if peer.gateway_id == self.gateway_id or self._peers.get(peer.gateway_id) == peer:
            return False
        self._peers[peer.gateway_id] = peer
        self._placer = None
        return True

    def peer_down(self, gateway_id: str) -> bool:
        """A peer's link is down; True when the ring changed."""
        if self._peers.pop(gateway_id, None) is None:
            return False
        self._placer = None
        return True

    def owner(self, edge_id: str) -> RingPeer | None:
        """The peer that owns ``edge_id``, or None when this gateway does."""
        return self.owners([edge_id])[0]

    def owners(self, edge_ids: Sequence[str]) -> list[RingPeer | None]:
        """:meth:`owner` of each of ``edge_ids``, in one vectorised lookup."""
        if not self._peers or not edge_ids:
            return [None] * len(edge_ids)
        if self._placer is None:
            self._placer = build_placer(self._placer_kind, dict.fromkeys(self.members, 1.0))
        nodes = self._placer.nodes
        return [self._peers.get(nodes[int(i)]) for i in self._placer.lookup(name_keys(edge_ids))]
