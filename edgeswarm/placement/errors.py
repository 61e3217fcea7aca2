"""Errors of the placement room (``edgeswarm.placement``)::

    PlacementError              a placement request cannot be answered
    ├── UnknownNodeError        a pin, drain or lookup names a node that is not a member
    ├── NoEligibleNodeError     every member is drained or down: nothing can own agents
    ├── HandoverRefusedError    a hand-over step breaks the table in handover.py
    │                           (stale epoch or batch, wrong sender, forbidden event)
    └── LeaseError              lease options that break the rule of lease.py
                                (defined there: --lease vs --edge-timeout)

All are our caller's mistakes or the fleet's state, never a peer's bytes: the
gateway turns them into a one-line answer to the operator, or a typed ERROR
frame (``PLACEMENT_STALE``) for an edge that sent a step of an older epoch.
"""

from __future__ import annotations

from edgeswarm.errors import EdgeswarmError

__all__ = ["HandoverRefusedError", "NoEligibleNodeError", "PlacementError", "UnknownNodeError"]


class PlacementError(EdgeswarmError):
    """Base of the placement room's errors."""


class UnknownNodeError(PlacementError, KeyError):
    """A pin, a drain or a lookup names a node that is not a member."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown node"


class NoEligibleNodeError(PlacementError):
    """Every member is drained or down: no node can own unpinned agents."""


class HandoverRefusedError(PlacementError):
    """A hand-over step that the table in :mod:`edgeswarm.placement.handover` forbids."""
