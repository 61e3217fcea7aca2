"""What a peer may write in the swarm state, decided once per session at WELCOME.

A peer gateway replicates everything (every writer's entries); an edge writes
the entries of the writer ids bound to its id in ``peers.db`` (its HELLO's
``state_incarnation`` binds one more: ``state.schema.client_id_for(peer_id,
incarnation)``; every incarnation it ever announced stays its); admins and
inference nodes only read. ``state.ownership.WriteGuard`` enforces it on every
update (docs/protocol.md, section 9.5).
"""

from __future__ import annotations

import logging

from edgeswarm.state import Writers
from edgeswarm.wire import Hello, Role

from .peers import EnrollmentConflict, PeerRegistry, PeerRegistryError
from .stats import GatewayStats

__all__ = ["state_rights"]

logger = logging.getLogger("edgeswarm.gateway")


def state_rights(hello: Hello, peers: PeerRegistry, stats: GatewayStats) -> tuple[Writers, bool]:
    """(writer ids the peer may write as, whether its role may write at all)."""
    if hello.role is Role.GATEWAY:
        return None, True
    if hello.role is not Role.EDGE:
        return frozenset(), False
    try:
        if hello.state_incarnation is not None:
            peers.bind_writer(hello.peer_id, hello.state_incarnation)
        return peers.writers_of(hello.peer_id), True
    except EnrollmentConflict as exc:  # the writer id is another peer's: not bound
        logger.warning(
            "state writer not bound", extra={"peer_id": hello.peer_id, "error": str(exc)}
        )
        return peers.writers_of(hello.peer_id), True
    except PeerRegistryError as exc:
        stats.storage_error("peers")
        logger.error(
            "peer registry failed",
            extra={"path": str(peers.path), "peer_id": hello.peer_id, "error": str(exc)},
        )
        return frozenset(), True
