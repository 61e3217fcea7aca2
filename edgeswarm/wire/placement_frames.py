"""Frames of placement between the gateway and its edges (feature ``placement``).

ASSIGN tells an edge which swarm agents it runs at a placement epoch; CHECKPOINT
carries an edge's agents' state rows to the gateway; REDIRECT (feature ``redirect``)
sends an edge to the gateway that owns it on the gateway ring. Both are columnar like an
OBS_BATCH: row ``i`` of every array is one agent. ``docs/protocol.md`` section 13
specifies them; ``placement_codec.py`` codes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Assign", "Checkpoint", "Redirect"]


@dataclass(frozen=True, eq=False)
class Assign:
    """ASSIGN, gateway -> edge: part ``part`` of the agents the edge runs at ``epoch``.

    The parts ``0 .. parts - 1`` of one epoch together are the edge's complete set;
    agents it runs that are in none of them are dropped, agents new to it start from
    the ``ticks`` and ``state`` given (their last checkpoint; 0 and zeros for none).
    """

    epoch: int
    """Placement epoch of the assignment; 0..2**63-1."""
    part: int
    """Which part of the epoch's set this frame is, 0-based."""
    parts: int
    """How many parts the epoch's set has (at least 1; an empty set is one empty part)."""
    agent_ids: NDArray[np.uint32]
    """Shape (n,), ascending, no repeats."""
    policy: NDArray[np.uint16]
    """Shape (n,): index into ``policy_names`` of the policy each agent runs."""
    ticks: NDArray[np.uint64]
    """Shape (n,): the last tick each agent was stepped at (it steps ``tick + 1`` next)."""
    state: NDArray[np.float32]
    """Shape (n, state_dim): the agent's policy state to start from."""
    policy_names: tuple[str, ...] = ()
    """Names of the policies ``policy`` indexes."""

    @property
    def count(self) -> int:
        return int(self.agent_ids.shape[0])


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """CHECKPOINT, edge -> gateway: state rows of agents the edge runs, at its tick ``tick``."""

    epoch: int
    """The placement epoch the edge runs these agents under (its last complete ASSIGN)."""
    tick: int
    """The edge's tick when the rows were taken (informational)."""
    agent_ids: NDArray[np.uint32]
    """Shape (n,), no repeats."""
    ticks: NDArray[np.uint64]
    """Shape (n,): the last tick each agent was stepped at."""
    state: NDArray[np.float32]
    """Shape (n, state_dim)."""

    @property
    def count(self) -> int:
        return int(self.agent_ids.shape[0])


@dataclass(frozen=True)
class Redirect:
    """REDIRECT, gateway -> edge: connect to gateway ``gateway_id`` at ``host``:``port``.

    Sent after AUTH instead of WELCOME, or in READY when the gateway ring changed;
    BYE (``REDIRECTED``) follows. The edge delivers to that gateway from then on.
    """

    gateway_id: str
    """The owning gateway's id (its ``--gateway-id``); 1..64 characters."""
    host: str
    """Its host name or address as the gateways reach each other (``--peer``); 1..253."""
    port: int
    """Its UDP port, 1..65535."""
    reason: str = ""
    """Why, for logs: ``owner`` (asked the wrong gateway) or ``ring`` (the ring changed)."""
