"""Placers: functions from agent ids to owner nodes, vectorised.

A *placer* is built from the members and their capacity weights (an edge with
twice the cores has weight 2 and gets twice the agents) and answers
``lookup(ids) -> owner index per id`` over a whole numpy array at once. Three
are here, compared by ``scripts/bench sharding`` (docs/benchmarks.md):

- :class:`HashRing` — consistent hashing with virtual nodes: each node puts
  ``round(vnodes * weight)`` points on a circle; an agent belongs to the
  first point at or after its hash (tabulated, see the class). A join only
  *adds* points, so the only agents that move go to the new node; a leave
  only removes points, so only the leaver's agents move. Balance improves as
  1/sqrt(vnodes).
- :class:`RendezvousHash` — highest random weight (weighted: score
  ``-weight / ln(u)``): perfect minimal movement, binomial balance, but a
  lookup costs one hash per node per agent.
- :class:`MaglevTable` — Google's Maglev lookup table (a prime number of
  slots filled by per-node permutations, weighted by turns): one hash and one
  array read per agent, near-perfect balance, but a join also shuffles a few
  slots between old nodes.

``DEFAULT_PLACER`` names the one the gateway uses and why.
All are pure: no sockets, no clocks, no randomness beyond the hashes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from edgeswarm.placement.errors import NoEligibleNodeError
from edgeswarm.placement.hashing import hash_ids, node_seed, unit_interval

__all__ = [
    "DEFAULT_VNODES",
    "HashRing",
    "MaglevTable",
    "Placer",
    "RendezvousHash",
    "build_placer",
]

DEFAULT_VNODES = 2048
"""Virtual points per unit of weight on :class:`HashRing` (balance ~1/sqrt of it)."""

RING_BITS = 20
"""Positions on the :class:`HashRing` circle: ~50 per virtual point of 10 nodes at 2048 each."""

_RING_SHIFT = np.uint64(64 - RING_BITS)

MAGLEV_SLOTS = 65537
"""Slots of :class:`MaglevTable`: a prime well above 100 x the node count."""

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


class Placer(Protocol):
    """What the gateway needs of a placement function."""

    @property
    def nodes(self) -> tuple[str, ...]:
        """Member names, sorted; ``lookup`` answers indices into this tuple."""
        ...

    def lookup(self, ids: NDArray[np.integer]) -> NDArray[np.int32]:
        """Owner index of every id (same shape as ``ids``)."""
        ...


def _checked_weights(weights: Mapping[str, float]) -> tuple[tuple[str, ...], NDArray[np.float64]]:
    nodes = tuple(sorted(name for name, weight in weights.items() if weight > 0))
    if not nodes:
        raise NoEligibleNodeError("no member with a positive weight: nothing can own agents")
    return nodes, np.array([float(weights[name]) for name in nodes], dtype=np.float64)


def _node_points(seed: int, count: int) -> NDArray[np.uint64]:
    """``count`` virtual points of one node, derived from its seed (vectorised)."""
    steps = np.arange(count, dtype=np.uint64)
    return hash_ids(steps, salt=seed)


class HashRing:
    """Consistent hashing with virtual nodes and capacity weights.

    The circle has ``2**RING_BITS`` positions: an agent's position is the top
    bits of its hash, a virtual point's the top bits of its own. An agent
    belongs to the first point at or after its position (wrapping). Because
    positions are few enough to tabulate, the owner of every position is
    precomputed once (``np.searchsorted`` of all positions over the sorted
    points) and a lookup is one hash and one array read per agent, with no
    search. Points that round to the same position keep their order by the
    full 64-bit hash; the later ones own an empty arc.
    """

    def __init__(self, weights: Mapping[str, float], *, vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, got {vnodes}")
        self._nodes, node_weights = _checked_weights(weights)
        counts = np.maximum(1, np.rint(node_weights * vnodes)).astype(np.int64)
        points = np.concatenate(
            [
                _node_points(node_seed(name), int(n))
                for name, n in zip(self._nodes, counts, strict=True)
            ]
        )
        owners = np.repeat(np.arange(len(self._nodes), dtype=np.int32), counts)
        order = np.argsort(points, kind="stable")
        positions = points[order] >> _RING_SHIFT
        first_at_or_after = np.searchsorted(
            positions, np.arange(1 << RING_BITS, dtype=np.uint64), side="left"
        )
        first_at_or_after[first_at_or_after == positions.shape[0]] = 0
        self._table = owners[order][first_at_or_after]
        self.vnodes = vnodes

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._nodes

    def lookup(self, ids: NDArray[np.integer]) -> NDArray[np.int32]:
        owners: NDArray[np.int32] = self._table[hash_ids(ids) >> _RING_SHIFT]
        return owners


class RendezvousHash:
    """Weighted highest-random-weight hashing: each agent goes to its best-scoring node."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        self._nodes, self._weights = _checked_weights(weights)
        self._seeds = [node_seed(name) for name in self._nodes]

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._nodes

    def lookup(self, ids: NDArray[np.integer]) -> NDArray[np.int32]:
        best = np.full(ids.shape, -np.inf)
        owner = np.zeros(ids.shape, dtype=np.int32)
        for index, (seed, weight) in enumerate(zip(self._seeds, self._weights, strict=True)):
            score = -weight / np.log(unit_interval(hash_ids(ids, salt=seed)))
            better = score > best
            best[better] = score[better]
            owner[better] = index
        return owner


class MaglevTable:
    """Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted by turns."""

    def __init__(self, weights: Mapping[str, float], *, slots: int = MAGLEV_SLOTS) -> None:
        self._nodes, node_weights = _checked_weights(weights)
        self._slots = slots
        n = len(self._nodes)
        seeds = [node_seed(name) for name in self._nodes]
        offset = np.array([s % slots for s in seeds], dtype=np.int64)
        skip = np.array([((s * _GOLDEN) & _MASK) % (slots - 1) + 1 for s in seeds], dtype=np.int64)
        table = np.full(slots, -1, dtype=np.int32)
        next_try = np.zeros(n, dtype=np.int64)
        credit = np.zeros(n, dtype=np.float64)
        share = node_weights / node_weights.max()
        filled = 0
        # Each round, every node earns its share of a turn and claims one slot per
        # whole turn: its next free slot along its own permutation.
        while filled < slots:
            credit += share
            for node in np.flatnonzero(credit >= 1.0):
                credit[node] -= 1.0
                while True:
                    slot = (offset[node] + next_try[node] * skip[node]) % slots
                    next_try[node] += 1
                    if table[slot] < 0:
                        table[slot] = node
                        filled += 1
                        break
                if filled == slots:
                    break
        self._table = table

    @property
    def nodes(self) -> tuple[str, ...]:
        return self._nodes

    def lookup(self, ids: NDArray[np.integer]) -> NDArray[np.int32]:
        owners: NDArray[np.int32] = self._table[hash_ids(ids) % np.uint64(self._slots)]
        return owners


DEFAULT_PLACER = "ring"
"""The placer the gateway uses (see docs/benchmarks.md, suite sharding, for why)."""

PLACERS = {"ring": HashRing, "rendezvous": RendezvousHash, "maglev": MaglevTable}
"""Placers by name (``--placer`` of the gateway; ``scripts/bench sharding`` compares them)."""


def build_placer(kind: str, weights: Mapping[str, float]) -> Placer:
    """The placer called ``kind`` over these members."""
    try:
        factory = PLACERS[kind]
    except KeyError:
        raise ValueError(f"unknown placer {kind!r}; known: {', '.join(PLACERS)}") from None
    placer: Placer = factory(weights)
    return placer
