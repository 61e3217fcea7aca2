"""64-bit hashes for placement, vectorised over numpy arrays.

Agent ids are hashed with the 64-bit finaliser of MurmurHash3 (``fmix64``),
written as five numpy operations over the whole id array: no Python call per
agent. xxhash (already a dependency) hashes one byte string per call, so it
would need a Python loop per agent; it hashes the *node names* instead (a
handful per ring), which seeds each node's virtual points. ``fmix64`` is a
bijection on 64-bit words with full avalanche, which is what a ring needs of
an agent-id hash; no cryptographic strength is required, since agent ids are
assigned by the operator, not chosen by peers.
"""

from __future__ import annotations

import numpy as np
import xxhash
from numpy.typing import NDArray

__all__ = ["hash_ids", "node_seed", "unit_interval"]

_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN_INT = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1
_S33 = np.uint64(33)


def hash_ids(ids: NDArray[np.integer], salt: int = 0) -> NDArray[np.uint64]:
    """``fmix64(id + salt * golden)`` of every id, as a new uint64 array."""
    h = ids.astype(np.uint64, copy=True)
    if salt:
        h += np.uint64((salt * _GOLDEN_INT) & _MASK)
    h ^= h >> _S33
    h *= _C1
    h ^= h >> _S33
    h *= _C2
    h ^= h >> _S33
    return h


def node_seed(name: str) -> int:
    """A node's 64-bit seed: xxh64 of its name (its virtual points derive from it)."""
    return xxhash.xxh64_intdigest(name.encode())


def unit_interval(hashes: NDArray[np.uint64]) -> NDArray[np.float64]:
    """Hashes mapped to (0, 1): the top 53 bits, plus half a step so 0 never occurs."""
    return ((hashes >> np.uint64(11)).astype(np.float64) + 0.5) * (1.0 / (1 << 53))
