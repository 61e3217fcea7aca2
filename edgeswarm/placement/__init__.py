"""Placement, pure and sans-I/O: which node owns which agent, and how agents move.

- ``ring``: placers (consistent-hash ring, rendezvous, Maglev), vectorised lookups
- ``membership``: members, their weights and states, the placement epoch
- ``assignment``: owners of every agent under one membership, pins included
- ``moves``: move plans from one assignment to the next, bounded batches
- ``handover``: the hand-over table that fences each batch by epoch and tick
- ``migration``: the gateway's side of a move plan, sans-I/O (commands out, events in)
- ``gateways``: edges over gateways, the same placers keyed by edge name
"""

from __future__ import annotations

from edgeswarm.placement.assignment import UNOWNED, Assignment, assign
from edgeswarm.placement.errors import (
    HandoverRefusedError,
    NoEligibleNodeError,
    PlacementError,
    UnknownNodeError,
)
from edgeswarm.placement.handover import Handover, HandoverEvent, HandoverState, resume_ticks
from edgeswarm.placement.membership import Member, Membership, MemberState
from edgeswarm.placement.moves import MoveBatch, MoveKind, MovePlan, plan_moves
from edgeswarm.placement.ring import (
    DEFAULT_PLACER,
    DEFAULT_VNODES,
    HashRing,
    MaglevTable,
    Placer,
    RendezvousHash,
    build_placer,
)

__all__ = [
    "DEFAULT_PLACER",
    "DEFAULT_VNODES",
    "UNOWNED",
    "Assignment",
    "Handover",
    "HandoverEvent",
    "HandoverRefusedError",
    "HandoverState",
    "HashRing",
    "MaglevTable",
    "Member",
    "MemberState",
    "Membership",
    "MoveBatch",
    "MoveKind",
    "MovePlan",
    "NoEligibleNodeError",
    "PlacementError",
    "Placer",
    "RendezvousHash",
    "UnknownNodeError",
    "assign",
    "build_placer",
    "plan_moves",
    "resume_ticks",
]
