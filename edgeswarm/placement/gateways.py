"""Edges over gateways: the same placers, keyed by edge name.

Several gateways split the fleet's edges by the ring: each edge belongs to
the gateway :func:`owner_gateways` names among the ACTIVE gateways of a
:class:`Membership` (members are gateway names from configuration, ``--peer``;
a gateway whose peer link is down is DOWN). When a gateway dies its edges go
to the next points on the ring; when it returns exactly those edges come back
(minimal movement, the ring's property). An edge name is hashed once with
xxh64 to a 64-bit key; the placers take it from there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from edgeswarm.placement.hashing import node_seed
from edgeswarm.placement.membership import Membership
from edgeswarm.placement.ring import DEFAULT_PLACER, build_placer

__all__ = ["name_keys", "owner_gateways"]


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
