"""Swarm agent ids looked up in the gateway's sorted id table, per observed batch.

The gateway keeps per-agent columns (the highest tick logged) indexed like the
sorted array of every swarm agent id. An edge's batch names agent ids; their rows
are found through a dense table (id -> row) while ids are compact, else by binary
search; a batch of consecutive ascending ids that are all swarm agents (an edge
batches its table in order) is one slice of rows, found in O(1).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["DENSE_SPAN", "consecutive_rows", "dense_table", "holds_run", "is_run", "rows_of"]

DENSE_SPAN = 4
"""Swarm agent ids are looked up through a dense table while the largest id is at most
this many times their number (else by binary search)."""


def dense_table(all_ids: NDArray[np.uint32]) -> NDArray[np.int32] | None:
    """id -> row in ``all_ids`` (sorted, unique), -1 for other ids; None when too sparse."""
    if not all_ids.size or int(all_ids[-1]) > DENSE_SPAN * all_ids.size:
        return None
    dense = np.full(int(all_ids[-1]) + 1, -1, dtype=np.int32)
    dense[all_ids] = np.arange(all_ids.size, dtype=np.int32)
    return dense


def is_run(ids: NDArray[np.uint32]) -> bool:
    """Whether ``ids`` are consecutive ascending ids (at least one)."""
    n = ids.shape[0]
    if n == 0 or int(ids[-1]) - int(ids[0]) != n - 1:
        return False
    return n == 1 or bool(np.all(ids[1:] > ids[:-1]))


def consecutive_rows(ids: NDArray[np.uint32], dense: NDArray[np.int32] | None) -> slice | None:
    """The rows of ``ids`` as one slice when they are consecutive ascending ids that are
    all swarm agents; None otherwise (then :func:`rows_of`)."""
    n = ids.shape[0]
    if dense is None or not is_run(ids) or int(ids[-1]) >= dense.shape[0]:
        return None
    first, last = int(dense[ids[0]]), int(dense[ids[-1]])
    return slice(first, last + 1) if first >= 0 and last - first == n - 1 else None


def holds_run(held: NDArray[np.uint32], ids: NDArray[np.uint32]) -> bool:
    """Whether ``ids`` are consecutive ascending ids all in ``held`` (sorted, unique): then
    ``held`` has ``len(ids)`` values from the first id to the last, which are exactly them."""
    if not is_run(ids):
        return False
    n = ids.shape[0]
    start = int(np.searchsorted(held, ids[0]))
    return (
        start + n <= held.size
        and int(held[start]) == int(ids[0])
        and (int(held[start + n - 1]) == int(ids[-1]))
    )


def rows_of(
    ids: NDArray[np.uint32], all_ids: NDArray[np.uint32], dense: NDArray[np.int32] | None
) -> NDArray[np.int32] | NDArray[np.intp]:
    """The rows of those of ``ids`` that are swarm agents (others are left out)."""
    if dense is not None:
        rows: NDArray[np.int32] = dense[ids[ids < dense.shape[0]]]
        return rows[rows >= 0]
    at: NDArray[np.intp] = np.searchsorted(all_ids, ids)
    known = at < all_ids.shape[0]
    known[known] = all_ids[at[known]] == ids[known]
    found: NDArray[np.intp] = at[known]
    return found
