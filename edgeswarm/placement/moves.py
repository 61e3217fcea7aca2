"""Move plans: from one assignment to the next, a bounded sequence of batches.

``plan_moves(old, new, membership)`` compares the owners of every agent and
groups the agents whose owner changes by (source, target), cut into batches of
at most ``batch_size`` agents. Each batch has a kind that says where the
agents' rows come from:

    HANDOVER   the source is alive: it stops stepping them at a tick boundary and
               sends their rows (columns + policy state + tick) through the gateway
    RESTORE    the source is DOWN or gone: the target starts them from their last
               checkpoint (staleness: the ticks since that checkpoint)
    PLACE      the agent had no owner before (new agent, or pinned to an edge that
               was down): the target starts it from its checkpoint if there is one,
               else from a zero state
    PARK       the agent loses its owner (its pinned edge is down, or no member is
               active): the source, if alive, hands its rows to the gateway, which
               keeps them as the agent's checkpoint

Order: RESTORE and PLACE first (those agents run nowhere now), then HANDOVER
and PARK, each by source then target, so one edge's outgoing moves are
contiguous. The gateway has at most ``--max-moves`` agents (:data:`DEFAULT_MAX_MOVES`)
on their way between edges at a time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgeswarm.placement.assignment import UNOWNED, Assignment
from edgeswarm.placement.membership import Membership

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_MOVES",
    "MoveBatch",
    "MoveKind",
    "MovePlan",
    "plan_moves",
]

DEFAULT_BATCH_SIZE = 4096
"""Agents per migration batch (one MIGRATE frame carries one batch)."""
DEFAULT_MAX_MOVES = 65_536
"""Agents that may be on their way from one edge to another at once (``--max-moves``):
one ASSIGN part's worth (the default ``max_batch_agents``). Each round costs a tick of
the giving edge and a round trip: draining 50 000 agents between two edges in rounds of
16 384 took 2-3 times as long as in one (docs/benchmarks.md, ``migration``)."""


class MoveKind(enum.Enum):
    RESTORE = "restore"
    PLACE = "place"
    HANDOVER = "handover"
    PARK = "park"


_ORDER = {MoveKind.RESTORE: 0, MoveKind.PLACE: 1, MoveKind.HANDOVER: 2, MoveKind.PARK: 3}


@dataclass(frozen=True)
class MoveBatch:
    """Agents that move together from one owner to another."""

    kind: MoveKind
    """Where their rows come from (see the module docstring)."""
    source: str | None
    """Old owner (None for PLACE)."""
    target: str | None
    """New owner (None for PARK)."""
    ids: NDArray[np.uint32]
    """The agents, sorted, at most the plan's batch size."""


@dataclass(frozen=True)
class MovePlan:
    """The moves from the assignment of one epoch to the next."""

    from_epoch: int
    to_epoch: int
    batches: tuple[MoveBatch, ...]

    @property
    def agents(self) -> int:
        """Agents that move in this plan."""
        return sum(int(b.ids.shape[0]) for b in self.batches)


def _kind(source: str | None, target: str | None, membership: Membership) -> MoveKind:
    if target is None:
        return MoveKind.PARK
    if source is None:
        return MoveKind.PLACE
    return MoveKind.HANDOVER if membership.alive(source) else MoveKind.RESTORE


def plan_moves(
    old: Assignment,
    new: Assignment,
    membership: Membership,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> MovePlan:
    """Batches that take every agent from its owner in ``old`` to its owner in ``new``.

    ``membership`` is the one ``new`` was computed from (it tells a live source
    from a dead one). Agents only in ``new`` are PLACEd; agents only in ``old``
    (removed from the swarm) are not moved: the gateway tells their owner to
    drop them.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    # Owners as indices into one name list (every node of either side, then "none").
    names = tuple(sorted(set(old.nodes) | set(new.nodes)))
    none = len(names)
    old_code = np.array([*(names.index(n) for n in old.nodes), none], dtype=np.int64)
    new_code = np.array([*(names.index(n) for n in new.nodes), none], dtype=np.int64)
    at = np.searchsorted(old.ids, new.ids)
    known = at < old.ids.shape[0]
    known[known] = old.ids[at[known]] == new.ids[known]
    source = np.full(new.ids.shape, none, dtype=np.int64)
    source[known] = old_code[old.owners[at[known]]]
    target = new_code[new.owners]
    moving = source != target
    pairs: dict[tuple[str, str], NDArray[np.uint32]] = {}
    if moving.any():
        keys = source[moving] * (none + 1) + target[moving]
        unique, inverse = np.unique(keys, return_inverse=True)
        moving_ids = new.ids[moving]
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(unique.shape[0] + 1))
        labels = (*names, "")
        for k, key in enumerate(unique.tolist()):
            src, dst = labels[key // (none + 1)], labels[key % (none + 1)]
            pairs[(src, dst)] = moving_ids[order[bounds[k] : bounds[k + 1]]]
    batches: list[MoveBatch] = []
    for (src, dst), ids in pairs.items():
        kind = _kind(src or None, dst or None, membership)
        for start in range(0, ids.shape[0], batch_size):
            batches.append(
                MoveBatch(kind, src or None, dst or None, ids[start : start + batch_size])
            )
    batches.sort(key=lambda b: (_ORDER[b.kind], b.source or "", b.target or ""))
    return MovePlan(from_epoch=old.epoch, to_epoch=new.epoch, batches=tuple(batches))


def unowned(assignment: Assignment) -> NDArray[np.uint32]:
    """Agents that no member runs under ``assignment``."""
    ids: NDArray[np.uint32] = assignment.ids[assignment.owners == UNOWNED]
    return ids
