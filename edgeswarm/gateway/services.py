"""What a gateway connection uses of the gateway that accepted it."""

from __future__ import annotations

from typing import Protocol

from edgeswarm.inference.lane_runner import LaneRunner

from .config import GatewayConfig
from .edge_sessions import EdgeSessions
from .gateway_ring import RingService
from .log import ObservationLog
from .module_distribution import ModuleDistribution
from .module_replication import ModuleReplication
from .peers import PeerRegistry
from .placement_edges import PlacementEdges
from .placement_service import PlacementService
from .state_service import StateService
from .stats import GatewayStats

__all__ = ["GatewayServices", "OpenConnection"]


class OpenConnection(Protocol):
    """A connection the gateway holds while its session stream exists."""

    def shutdown(self) -> None:
        """Say BYE (the gateway is going away)."""


class GatewayServices(Protocol):
    """What a connection uses of the gateway that accepted it (``server.Gateway`` is one)."""

    @property
    def config(self) -> GatewayConfig:
        """Limits and names the connection announces."""
        ...

    @property
    def stats(self) -> GatewayStats:
        """Per-edge totals and metrics."""
        ...

    @property
    def observation_log(self) -> ObservationLog:
        """Where batches are made durable before they are acknowledged."""
        ...

    @property
    def state(self) -> StateService:
        """The swarm document the session's state frames go to."""
        ...

    @property
    def peers(self) -> PeerRegistry:
        """Who may connect, under which name and role."""
        ...

    @property
    def edge_sessions(self) -> EdgeSessions:
        """The live session of each edge and its sequence epoch."""
        ...

    @property
    def placement(self) -> PlacementService:
        """Swarm agents, edges and their assignment (feature ``placement``)."""
        ...

    @property
    def modules(self) -> ModuleDistribution:
        """Module assignments, blobs and reports (feature ``modules``)."""
        ...

    @property
    def replication(self) -> ModuleReplication:
        """The module registry replicated to peer gateways (feature ``registry``)."""
        ...

    @property
    def placement_edges(self) -> PlacementEdges:
        """ASSIGN to edges with feature ``placement``, their CHECKPOINT rows stored."""
        ...

    @property
    def ring(self) -> RingService:
        """The gateway ring: which gateway owns an edge, REDIRECTs (feature ``redirect``)."""
        ...

    @property
    def heavy(self) -> LaneRunner:
        """The heavy inference lane (feature ``heavy``)."""
        ...

    def credit_window(self) -> int:
        """Batches an edge may have unacknowledged now."""
        ...

    def connection_opened(self, connection: OpenConnection) -> None:
        """The connection's session stream exists."""

    def connection_closed(self, connection: OpenConnection) -> None:
        """The connection is gone."""
