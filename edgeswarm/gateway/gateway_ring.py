"""Several gateways: which of them each edge belongs to, and REDIRECTs to the owner.

The gateway ring (``placement/gateways.py``) maps edge ids to gateways; a gateway
started with ``--shard-edges`` acts on it. Its
members are this gateway and the peers of ``--peer`` whose link is up
(``replication.py``: a peer that answers nothing for ``--peer-timeout`` is
down). An edge that speaks feature ``redirect`` and authenticates at a gateway
that does not own it gets REDIRECT instead of WELCOME; when the ring changes (a
peer came back, or went away and came back), the live edges that now belong
elsewhere are redirected there. Edges without the feature are served wherever
they connect. ``docs/operations.md`` ("Several gateways") is the operator's view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeswarm.placement.gateways import GatewayRing, RingPeer
from edgeswarm.wire import Redirect

__all__ = ["RedirectingSession", "RingService"]

logger = logging.getLogger("edgeswarm.gateway")


class RedirectingSession(Protocol):
    """A live edge session the ring may send elsewhere."""

    def redirect(self, redirect: Redirect) -> bool:
        """REDIRECT then BYE when the edge speaks feature ``redirect``; True if sent."""


class PeerLinkView(Protocol):
    """What the ring reads of a peer link (``replication.PeerGatewayLink``)."""

    @property
    def connected(self) -> bool: ...

    remote_id: str | None

    @property
    def peer_address(self) -> tuple[str, int]: ...


class RingService:
    """This gateway's ring view, its REDIRECTs and their metrics."""

    def __init__(
        self,
        gateway_id: str,
        live_sessions: Callable[[], Iterable[tuple[str, RedirectingSession]]],
        *,
        registry: CollectorRegistry,
        placer: str,
        enabled: bool = True,
    ) -> None:
        """``enabled`` False (no ``--shard-edges``): the ring is kept, nobody is redirected."""
        self.ring = GatewayRing(gateway_id, placer=placer)
        self.enabled = enabled
        self._live_sessions = live_sessions
        self._redirects = Counter(
            "edgeswarm_gateway_redirects",
            "Edges sent to the gateway that owns them on the gateway ring, by reason"
            " (owner: at the handshake; ring: the ring changed while connected)",
            ["reason"],
            registry=registry,
        )
        for reason in ("owner", "ring"):
            self._redirects.labels(reason)
        self._members = Gauge(
            "edgeswarm_gateway_ring_gateways",
            "Gateways in this gateway's view of the gateway ring (itself and peers that are up)",
            registry=registry,
        )
        self._members.set(1)

    def redirect_for(self, edge_id: str, reason: str) -> Redirect | None:
        """The REDIRECT for ``edge_id`` when another gateway owns it, else None."""
        owner = self.ring.owner(edge_id) if self.enabled else None
        if owner is None:
            return None
        return Redirect(owner.gateway_id, owner.host, owner.port, reason)

    def redirected(self, redirect: Redirect) -> None:
        """Count a REDIRECT sent."""
        self._redirects.labels(redirect.reason).inc()

    def link_changed(self, link: PeerLinkView) -> None:
        """A peer link came up or went down: update the ring, redirect edges it moved."""
        if link.remote_id is None:
            return
        host, port = link.peer_address
        changed = (
            self.ring.peer_up(RingPeer(link.remote_id, host, port))
            if link.connected
            else self.ring.peer_down(link.remote_id)
        )
        if not changed:
            return
        self._members.set(len(self.ring.members))
        redirected = 0
        sessions = list(self._live_sessions()) if self.enabled else []
        owners = self.ring.owners([edge_id for edge_id, _ in sessions])
        for (_, session), owner in zip(sessions, owners, strict=True):
            if owner is None:
                continue
            redirect = Redirect(owner.gateway_id, owner.host, owner.port, "ring")
            if session.redirect(redirect):
                redirected += 1
        logger.info(
            "gateway ring changed",
            extra={
                "peer_id": link.remote_id,
                "up": link.connected,
                "gateways": list(self.ring.members),
                "redirected": redirected,
            },
        )
