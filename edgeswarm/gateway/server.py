"""The gateway process: QUIC listener, peer registry, durable log, sessions, metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from edgeswarm.client.address import GatewayAddress
from edgeswarm.identity import load_or_create_key
from edgeswarm.inference.lane_runner import LaneRunner
from edgeswarm.inference.metrics import LaneCollector, LaneMetrics
from edgeswarm.state import StoreFsyncPolicy
from edgeswarm.storage import DirectoryLock
from edgeswarm.telemetry import DaemonEndpoint, Probes
from edgeswarm.transport import quic
from edgeswarm.transport.tls import ensure_certificates

from .agent_store import AgentStore
from .config import GatewayConfig
from .connection import GatewayConnection
from .edge_sessions import EdgeSessions
from .gateway_ring import RingService
from .log import LogCollector, ObservationLog, Scrubber, ScrubCollector
from .module_distribution import ModuleDistribution
from .module_replication import ModuleReplication
from .peers import PeerRegistry
from .placement_edges import AssignMetrics, PlacementEdges
from .placement_metrics import PlacementMetrics
from .placement_service import PlacementService
from .replication import PeerGatewayLink, names_this_gateway
from .revocation import RevocationWatch
from .services import OpenConnection
from .state_service import StateService
from .stats import GatewayStats, PreAuthCollector

logger = logging.getLogger("edgeswarm.gateway")

HELLO_GRACE_S = 1.0
"""The transport closes an unauthenticated connection this long after the session's
HELLO_TIMEOUT, so that a session that has a stream says why first."""


class Gateway:
    """A running gateway. ``await start()``, then ``close()``."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.stats = GatewayStats(config.gateway_id, time.monotonic())
        self.connections: set[GatewayConnection] = set()
        self.listener: quic.QuicListener | None = None
        self.metrics_port: int | None = None
        self.ca_file = None if config.cert is not None else config.data_dir / "ca.crt"
        self._lock = DirectoryLock(config.data_dir, name="gateway", owner="gateway")
        """One gateway per data directory (its log, state and registry have one writer)."""
        try:
            self._open(config)
        except BaseException:
            self._lock.close()
            raise

    def _open(self, config: GatewayConfig) -> None:
        self.peers = PeerRegistry(config.data_dir / "peers.db")
        self.observation_log = ObservationLog(
            config.data_dir / "observations.db",
            fsync=config.fsync,
            max_pending_bytes=4 * config.max_log_backlog_bytes,
        )
        self.stats.metrics.registry.register(LogCollector(self.observation_log))
        self.scrubber: Scrubber | None = None
        """Reads the log back in the background (``log/scrub.py``), once started."""
        self.edge_sessions = EdgeSessions(self.observation_log, self.stats)
        """The live session of each edge and its sequence epoch (``edge_sessions.py``)."""
        for edge_id, aggregate in self.observation_log.edges().items():
            self.stats.restore(
                edge_id,
                batches=aggregate.batches,
                observations=aggregate.observations,
                size=aggregate.bytes,
                last_seq=aggregate.max_seq,
            )
        state_fsync: StoreFsyncPolicy = "interval"  # "normal": a killed process loses nothing
        if config.fsync in ("always", "off"):
            state_fsync = "always" if config.fsync == "always" else "never"
        self.state = StateService(
            config.data_dir / "state",
            writer_id=config.gateway_id,
            fsync=state_fsync,
            on_change=self._state_changed,
            on_refused=self.stats.protocol_error,
            on_store_error=lambda: self.stats.storage_error("state"),
        )
        """The shared swarm document, synced with every state peer (``state_service.py``)."""
        self.stats.metrics.state_peers.set_function(lambda: self.state.peers)
        self.placement = PlacementService(
            AgentStore(config.data_dir / "placement.db"),
            self.edge_sessions.live_edges,
            placer=config.placer,
            edge_timeout_s=config.edge_timeout_s,
            metrics=PlacementMetrics(self.stats.metrics.registry),
        )
        """Swarm agents and their assignment to edges (``placement_service.py``)."""
        self.placement_edges = PlacementEdges(
            self.placement.store,
            self.placement.refresh,
            lease_ticks=config.lease.ticks,  # LeaseError (a ValueError) on bad options
            lease_s=config.lease.seconds,
            max_moves=config.max_moves,
            next_round=self.placement.next_round,
            metrics=AssignMetrics(self.stats.metrics.registry, self.placement.store),
        )
        """ASSIGN to edges, their checkpoints stored (``placement_edges.py``)."""
        self.placement.on_assignment = self.placement_edges.assignment_changed
        self.placement.holders = self.placement_edges.holders
        self.modules = self._open_modules(config)
        """The module registry served to edges (``module_distribution.py``)."""
        self.replication = ModuleReplication(self.modules, registry=self.stats.metrics.registry)
        """The module registry replicated to peer gateways (``module_replication.py``)."""
        self._modules_task: asyncio.Task[None] | None = None
        self._replication_task: asyncio.Task[None] | None = None
        self.identity = load_or_create_key(config.identity_key or config.data_dir / "identity.key")
        """This gateway's key, used when it connects to peer gateways."""
        self.heavy = LaneRunner(
            config.heavy,
            metrics=LaneMetrics(self.stats.metrics.registry),
            oip_routes=config.infer_oip,
        )
        """The heavy inference lane: batches edges' requests to inference nodes."""
        self.stats.metrics.registry.register(LaneCollector(self.heavy.lane.counters))
        self.ring = RingService(
            config.gateway_id,
            self.edge_sessions.live_sessions,
            registry=self.stats.metrics.registry,
            placer=config.placer,
            enabled=config.shard_edges,
        )
        """Which gateway owns each edge; REDIRECTs to it (``gateway_ring.py``)."""
        self.peer_links: list[PeerGatewayLink] = []
        self._peer_tasks: list[asyncio.Task[None]] = []
        self._broadcast: asyncio.TimerHandle | None = None
        self.probes = Probes(self.not_ready)
        """``/healthz`` and ``/readyz`` beside ``/metrics``."""
        self.endpoint: DaemonEndpoint | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.revocations = RevocationWatch(
            self.peers,
            lambda: self.connections,
            on_revoked=self.stats.session_revoked,
            on_error=lambda: self.stats.storage_error("peers"),
        )
        """Closes the sessions of keys removed from ``peers.db`` (``revocation.py``)."""
        self._revocation_task: asyncio.Task[None] | None = None

    def _open_modules(self, config: GatewayConfig) -> ModuleDistribution:
        from edgeswarm.registry import ModuleStore

        return ModuleDistribution(
            ModuleStore(config.data_dir / "modules.db"),
            registry=self.stats.metrics.registry,
            on_store_error=lambda: self.stats.storage_error("modules"),
        )

    def credit_window(self) -> int:
        """Batches an edge may have unacknowledged now: smaller while the log lags."""
        window = self.config.credit_window
        if self.observation_log.pending_bytes > self.config.max_log_backlog_bytes:
            window = max(1, window // 8)
        return window

    @property
    def port(self) -> int:
        """The UDP port the gateway listens on."""
        if self.listener is None:
            raise RuntimeError("gateway not started")
        return self.listener.port

    async def start(self) -> None:
        config = self.config
        if config.cert is not None and config.key is not None:
            cert, key = config.cert, config.key
        else:
            paths = ensure_certificates(config.data_dir)
            cert, key = paths.cert, paths.key
        self.listener = await quic.serve(
            config.host,
            config.port,
            cert=cert,
            key=key,
            handler_factory=lambda: GatewayConnection(self),
            idle_timeout=config.idle_timeout_s,
            stack=config.stack,
            settings=config.transport,
            admission=dataclasses.replace(
                config.preauth, deadline_s=config.hello_timeout_s + HELLO_GRACE_S
            ),
        )
        self.stats.metrics.registry.register(PreAuthCollector(self.listener))
        for host, port in config.peers:
            if names_this_gateway(host, config.gateway_id):
                logger.info(
                    "peer is this gateway; not replicating with itself",
                    extra={"peer": f"{host}:{port}", "gateway_id": config.gateway_id},
                )
                continue
            self.add_peer_gateway(host, port)
        self.heavy.start()
        if config.log_scrub_interval_s is not None:
            self.scrubber = Scrubber(
                self.observation_log.path,
                interval_s=config.log_scrub_interval_s,
                max_bytes_per_s=config.log_scrub_bytes_per_s,
            )
            self.stats.metrics.registry.register(ScrubCollector(self.scrubber))
            self.scrubber.start()
        if config.metrics_port is not None:
            self.endpoint = DaemonEndpoint(
                self.stats.metrics.registry,
                self.probes,
                host=config.metrics_host,
                port=config.metrics_port,
            )
            self.metrics_port = self.endpoint.port
        loop = asyncio.get_running_loop()
        self._heartbeat = loop.create_task(self.probes.keep_beating())
        self._revocation_task = loop.create_task(self.revocations.run())
        self._modules_task = loop.create_task(self.modules.run())
        self._replication_task = loop.create_task(self.replication.run())
        logger.info(
            "gateway listening",
            extra={
                "host": config.host,
                "port": self.listener.port,
                "gateway_id": config.gateway_id,
                "metrics_port": self.metrics_port,
            },
        )

    def not_ready(self) -> list[str]:
        """What keeps the gateway from taking observations now (``/readyz``)."""
        problems = []
        if self.listener is None:
            problems.append("not listening")
        if not self.observation_log.writable:
            problems.append(f"observation log {self.observation_log.path} is not open")
        return problems

    def add_peer_gateway(self, host: str, port: int) -> PeerGatewayLink:
        """Start replicating the swarm state with the gateway at ``host:port``."""
        ca_file = self.config.peer_ca or self.ca_file
        if ca_file is None:
            raise ValueError("peer gateways need a CA: give peer_ca")
        link = PeerGatewayLink(
            GatewayAddress(host=host, port=port, ca_file=ca_file, stack=self.config.stack),
            gateway_id=self.config.gateway_id,
            key=self.identity,
            service=self.state,
            registry=self.replication,
            timeout_s=self.config.peer_timeout_s,
            on_change=self.ring.link_changed,
        )
        self.peer_links.append(link)
        self._peer_tasks.append(asyncio.get_running_loop().create_task(link.run()))
        return link

    def _state_changed(self) -> None:
        self.stats.metrics.state_updates_applied.inc()
        if self._broadcast is None:
            loop = asyncio.get_running_loop()
            self._broadcast = loop.call_later(self.config.state_broadcast_s, self._send_state)

    def _send_state(self) -> None:
        self._broadcast = None
        self.stats.metrics.state_updates_sent.inc(self.state.broadcast())

    def connection_opened(self, connection: OpenConnection) -> None:
        if isinstance(connection, GatewayConnection):  # the only kind this gateway makes
            self.connections.add(connection)

    def connection_closed(self, connection: OpenConnection) -> None:
        self.connections.discard(connection)
        if self.listener is not None:  # an edge gone this long is DOWN (placement_service.py)
            loop = asyncio.get_running_loop()
            loop.call_soon(self._refresh_placement)  # notes when it went
            loop.call_later(self.config.edge_timeout_s, self._refresh_placement)
            loop.call_later(self.config.lease.seconds + 0.01, self._leases_ended)

    def _leases_ended(self) -> None:
        if self.listener is not None:  # agents withheld while their edge's lease ran go on
            self.placement_edges.leases_ended()

    def _refresh_placement(self) -> None:
        if self.listener is not None:  # not once closed: placement.db is closed too
            self.placement.refresh()

    def close(self) -> None:
        """Say BYE to every peer and stop listening."""
        if self._broadcast is not None:
            self._broadcast.cancel()
            self._send_state()
        for link in self.peer_links:
            link.stop()
        for task in self._peer_tasks:
            task.cancel()
        for connection in list(self.connections):
            connection.shutdown()
        self.heavy.stop()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.scrubber is not None:
            self.scrubber.close()
        for background in (
            self._heartbeat,
            self._revocation_task,
            self._modules_task,
            self._replication_task,
        ):
            if background is not None:
                background.cancel()
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None
        self.observation_log.close()
        self.state.close()
        self.peers.close()
        self.placement.store.close()
        self.modules.service.store.close()
        self._lock.close()
        logger.info("gateway stopped", extra={"gateway_id": self.config.gateway_id})

    async def wait_closed(self) -> None:
        """After :meth:`close`: wait until the peer-gateway links have ended (a link
        cancelled mid-connect still closes its socket, within a second)."""
        await asyncio.gather(*self._peer_tasks, return_exceptions=True)
