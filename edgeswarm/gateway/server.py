"""The gateway process: QUIC listener, peer registry, durable log, sessions, metrics."""

from __future__ import annotations

import asyncio
import logging
import time

from edgeswarm.identity import load_or_create_key
from edgeswarm.state import FsyncPolicy
from edgeswarm.telemetry import start_metrics_server
from edgeswarm.transport import quic
from edgeswarm.transport.tls import ensure_certificates

from .config import GatewayConfig
from .connection import GatewayConnection
from .log_metrics import LogCollector
from .observation_log import ObservationLog
from .peers import PeerRegistry
from .replication import PeerAddress, PeerGatewayLink
from .state_service import StateService
from .stats import GatewayStats

log = logging.getLogger("edgeswarm.gateway")


class Gateway:
    """A running gateway. ``await start()``, then ``close()``."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.stats = GatewayStats(config.gateway_id, time.monotonic())
        self.connections: set[GatewayConnection] = set()
        self.listener: quic.QuicListener | None = None
        self.metrics_port: int | None = None
        self.ca_file = None if config.cert is not None else config.data_dir / "ca.crt"
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.peers = PeerRegistry(config.data_dir / "peers.db")
        self.log = ObservationLog(
            config.data_dir / "observations.db",
            fsync=config.fsync,
            max_pending_bytes=4 * config.max_log_backlog_bytes,
        )
        self.stats.metrics.registry.register(LogCollector(self.log))
        for edge_id, aggregate in self.log.edges().items():
            self.stats.restore(
                edge_id,
                batches=aggregate.batches,
                observations=aggregate.observations,
                size=aggregate.bytes,
                last_seq=aggregate.max_seq,
            )
        state_fsync: FsyncPolicy = "interval"  # "normal": a killed process loses nothing
        if config.fsync in ("always", "off"):
            state_fsync = "always" if config.fsync == "always" else "never"
        self.state = StateService(
            config.data_dir / "state",
            writer_id=config.gateway_id,
            fsync=state_fsync,
            on_change=self._state_changed,
            on_refused=self.stats.protocol_error,
        )
        """The shared swarm document, synced with every state peer (``state_service.py``)."""
        self.stats.metrics.state_peers.set_function(lambda: self.state.peers)
        self.identity = load_or_create_key(config.identity_key or config.data_dir / "identity.key")
        """This gateway's key, used when it connects to peer gateways."""
        self.peer_links: list[PeerGatewayLink] = []
        self._peer_tasks: list[asyncio.Task[None]] = []
        self._broadcast: asyncio.TimerHandle | None = None

    def credit_window(self) -> int:
        """Batches an edge may have unacknowledged now: smaller while the log lags."""
        window = self.config.credit_window
        if self.log.pending_bytes > self.config.max_log_backlog_bytes:
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
            stack=config.stack,
            settings=config.transport,
        )
        for host, port in config.peers:
            self.add_peer_gateway(host, port)
        if config.metrics_port is not None:
            self.metrics_port = start_metrics_server(
                config.metrics_port, self.stats.metrics.registry, config.metrics_host
            )
        log.info(
            "gateway listening",
            extra={
                "host": config.host,
                "port": self.listener.port,
                "gateway_id": config.gateway_id,
                "metrics_port": self.metrics_port,
            },
        )

    def add_peer_gateway(self, host: str, port: int) -> PeerGatewayLink:
        """Start replicating the swarm state with the gateway at ``host:port``."""
        ca_file = self.config.peer_ca or self.ca_file
        if ca_file is None:
            raise ValueError("peer gateways need a CA: give peer_ca")
        link = PeerGatewayLink(
            PeerAddress(host=host, port=port, ca_file=ca_file),
            gateway_id=self.config.gateway_id,
            key=self.identity,
            service=self.state,
            stack=self.config.stack,
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

    def connection_opened(self, connection: GatewayConnection) -> None:
        self.connections.add(connection)

    def connection_closed(self, connection: GatewayConnection) -> None:
        self.connections.discard(connection)

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
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.log.close()
        self.state.close()
        self.peers.close()
        log.info("gateway stopped", extra={"gateway_id": self.config.gateway_id})

    async def wait_closed(self) -> None:
        """After :meth:`close`: wait until the peer-gateway links have ended (a link
        cancelled mid-connect still closes its socket, within a second)."""
        await asyncio.gather(*self._peer_tasks, return_exceptions=True)
