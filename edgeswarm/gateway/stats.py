"""What the gateway knows about its edges, for STATUS answers and Prometheus."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgeswarm.state import RemoteStateError
from edgeswarm.telemetry import daemon_registry
from edgeswarm.transport.quic import AdmissionStats
from edgeswarm.wire import EdgeStatus, ErrorCode, RemoteProtocolError, Role, Status

from .log import LogClosed, LogOverloaded, ObservationLogError

STORES = ("peers", "observation_log", "state", "modules")
LOG_REFUSAL_REASONS = tuple(
    error.reason for error in (LogOverloaded, LogClosed, ObservationLogError)
)
"""Labels of ``edgeswarm_gateway_log_refused_batches_total``, each shown at 0 from the start."""
"""The gateway's files, as ``edgeswarm_gateway_storage_errors_total{store}`` names them."""
REFUSAL_CODES = (
    ErrorCode.AUTH_FAILED,
    ErrorCode.UNKNOWN_PEER,
    ErrorCode.ROLE_NOT_ALLOWED,
    ErrorCode.BAD_TOKEN,
    ErrorCode.STALE_SEQ_EPOCH,
    ErrorCode.INTERNAL_ERROR,
)
"""Codes a peer can be refused with at the handshake (``peers_refused_total{code}``)."""


def _peer_error_codes() -> list[str]:
    """Names of the codes of every error a peer can cause (``protocol_errors_total{code}``)."""
    codes: set[str] = {ErrorCode.HELLO_TIMEOUT.name}
    todo: list[type[Exception]] = [RemoteProtocolError, RemoteStateError]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        code = getattr(cls, "error_code", None)
        if code is not None and cls not in (RemoteProtocolError, RemoteStateError):
            codes.add(ErrorCode(code).name)
    return sorted(codes)


@dataclass
class EdgeRecord:
    """Running totals for one edge (by edge id: the ``peer_id`` of its HELLO), kept
    across reconnects."""

    edge_id: str
    agents: int = 0
    sessions_open: int = 0
    batches: int = 0
    observations: int = 0
    bytes: int = 0
    last_seq: int = 0
    errors: int = 0
    duplicates: int = 0
    last_seen: float = 0.0
    """Wall-clock time (Unix seconds) the edge last authenticated or had a batch
    committed; 0: not since this gateway started."""
    address: str = ""
    """``host:port`` of its last session."""

    def to_status(self) -> EdgeStatus:
        return EdgeStatus(
            peer_id=self.edge_id,  # the STATUS frame's name for it
            connected=self.sessions_open > 0,
            agents=self.agents,
            batches=self.batches,
            observations=self.observations,
            bytes=self.bytes,
            last_seq=self.last_seq,
            errors=self.errors,
            last_seen=self.last_seen,
            address=self.address,
        )


class Stored(Protocol):
    """What :meth:`GatewayStats.batch_stored` reads of the log's ``AppendResult``."""

    @property
    def seq(self) -> int: ...

    @property
    def applied(self) -> bool: ...


class GatewayMetrics:
    """The gateway's Prometheus series, in their own registry."""

    def __init__(self) -> None:
        self.registry = daemon_registry("gateway")
        self.sessions_open = Gauge(
            "edgeswarm_gateway_sessions_open", "Open sessions", ["role"], registry=self.registry
        )
        self.sessions = Counter(
            "edgeswarm_gateway_sessions", "Sessions accepted", ["role"], registry=self.registry
        )
        self.batches = Counter(
            "edgeswarm_gateway_batches", "Observation batches accepted", registry=self.registry
        )
        self.observations = Counter(
            "edgeswarm_gateway_observations", "Observations accepted", registry=self.registry
        )
        self.received_bytes = Counter(
            "edgeswarm_gateway_batch_bytes",
            "Payload bytes of accepted batches",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "edgeswarm_gateway_duplicate_batches",
            "Batches received again (resent after a reconnect), acknowledged, not re-applied",
            registry=self.registry,
        )
        self.storage_errors = Counter(
            "edgeswarm_gateway_storage_errors",
            "Reads or writes of the gateway's files that failed, by store"
            " (peers, observation_log, state)",
            ["store"],
            registry=self.registry,
        )
        self.replaced = Counter(
            "edgeswarm_gateway_sessions_replaced",
            "Edge sessions closed because a newer session of the same edge id authenticated",
            registry=self.registry,
        )
        self.conflicts = Counter(
            "edgeswarm_gateway_seq_conflicts",
            "Batches whose (edge, seq) already holds other bytes (two senders, one numbering);"
            " not acknowledged, the session closed with SEQ_CONFLICT",
            registry=self.registry,
        )
        self.rejected = Counter(
            "edgeswarm_gateway_batches_rejected",
            "Batches the log can never store (answered with ERROR BATCH_REJECTED)",
            registry=self.registry,
        )
        self.refused = Counter(
            "edgeswarm_gateway_peers_refused",
            "Peers refused at the handshake, by error code name",
            ["code"],
            registry=self.registry,
        )
        self.state_updates_applied = Counter(
            "edgeswarm_gateway_state_updates_applied",
            "Swarm-state updates from peers that changed the document (persisted)",
            registry=self.registry,
        )
        self.state_updates_sent = Counter(
            "edgeswarm_gateway_state_updates_sent",
            "Swarm-state updates sent to peers (each what that peer lacked)",
            registry=self.registry,
        )
        self.state_peers = Gauge(
            "edgeswarm_gateway_state_peers",
            "Sessions syncing the swarm state (edges, admins, peer gateways)",
            registry=self.registry,
        )
        self.protocol_errors = Counter(
            "edgeswarm_gateway_protocol_errors",
            "Protocol violations by peers, by error code name",
            ["code"],
            registry=self.registry,
        )
        self.revoked = Counter(
            "edgeswarm_gateway_sessions_revoked",
            "Sessions closed (ERROR + BYE KEY_REVOKED) because their key left the registry"
            " or changed",
            ["role"],
            registry=self.registry,
        )
        self.log_refused = Counter(
            "edgeswarm_gateway_log_refused_batches",
            "Batches the durable log refused at append (reason: overloaded, closed); "
            "the session is closed, the edge keeps them and resends",
            ["reason"],
            registry=self.registry,
        )
        for role in Role:  # every known label shows 0 before its first event
            self.sessions_open.labels(role.value)
            self.sessions.labels(role.value)
            self.revoked.labels(role.value)
        for store in STORES:
            self.storage_errors.labels(store)
        for code in REFUSAL_CODES:
            self.refused.labels(code.name)
        for name in _peer_error_codes():
            self.protocol_errors.labels(name)
        for reason in LOG_REFUSAL_REASONS:
            self.log_refused.labels(reason=reason)


class GatewayStats:
    """Per-edge records and the metrics that mirror them."""

    def __init__(self, gateway_id: str, started_at: float) -> None:
        self.gateway_id = gateway_id
        self.started_at = started_at
        self.edges: dict[str, EdgeRecord] = {}
        self.metrics = GatewayMetrics()

    def edge(self, edge_id: str) -> EdgeRecord:
        record = self.edges.get(edge_id)
        if record is None:
            record = self.edges[edge_id] = EdgeRecord(edge_id)
        return record

    def session_opened(
        self, peer_id: str, role: str, agents: int, *, address: str = "", at: float = 0.0
    ) -> None:
        self.metrics.sessions.labels(role).inc()
        self.metrics.sessions_open.labels(role).inc()
        if role == "edge":
            record = self.edge(peer_id)
            record.sessions_open += 1
            record.agents = agents
            record.address = address
            record.last_seen = max(record.last_seen, at)

    def session_closed(self, peer_id: str, role: str) -> None:
        self.metrics.sessions_open.labels(role).dec()
        if role == "edge":
            self.edge(peer_id).sessions_open -= 1

    def batch_accepted(
        self, edge_id: str, seq: int, count: int, size: int, *, at: float = 0.0
    ) -> None:
        record = self.edge(edge_id)
        record.last_seen = max(record.last_seen, at)
        record.batches += 1
        record.observations += count
        record.bytes += size
        record.last_seq = max(record.last_seq, seq)
        self.metrics.batches.inc()
        self.metrics.observations.inc(count)
        self.metrics.received_bytes.inc(size)

    def batch_stored(
        self, edge_id: str, outcome: Stored, count: int, size: int, *, at: float
    ) -> None:
        """The log committed a batch of ``edge_id``: new (counted) or a duplicate."""
        if outcome.applied:
            self.batch_accepted(edge_id, outcome.seq, count, size, at=at)
        else:
            self.batch_duplicate(edge_id)

    def batch_duplicate(self, edge_id: str) -> None:
        self.edge(edge_id).duplicates += 1
        self.metrics.duplicates.inc()

    def batch_rejected(self, edge_id: str) -> None:
        self.edge(edge_id).errors += 1
        self.metrics.rejected.inc()

    def seq_conflict(self, edge_id: str) -> None:
        self.edge(edge_id).errors += 1
        self.metrics.conflicts.inc()

    def log_refused(self, reason: str) -> None:
        """The log refused a batch at append (``overloaded``, ``closed``)."""
        self.metrics.log_refused.labels(reason=reason).inc()

    def session_replaced(self) -> None:
        self.metrics.replaced.inc()

    def session_revoked(self, role: str) -> None:
        self.metrics.revoked.labels(role).inc()

    def storage_error(self, store: str) -> None:
        self.metrics.storage_errors.labels(store).inc()

    def peer_refused(self, code_name: str) -> None:
        self.metrics.refused.labels(code_name).inc()

    def restore(
        self, edge_id: str, *, batches: int, observations: int, size: int, last_seq: int
    ) -> None:
        """Seed an edge's totals from the durable log at startup."""
        record = self.edge(edge_id)
        record.batches, record.observations = batches, observations
        record.bytes, record.last_seq = size, last_seq

    def protocol_error(self, peer_id: str | None, code_name: str) -> None:
        self.metrics.protocol_errors.labels(code_name).inc()
        if peer_id is not None and peer_id in self.edges:
            self.edges[peer_id].errors += 1

    def status(self, now: float) -> Status:
        return Status(
            gateway_id=self.gateway_id,
            uptime_s=now - self.started_at,
            edges=tuple(record.to_status() for record in self.edges.values()),
        )


class PreAuthListener(Protocol):
    """What :class:`PreAuthCollector` reads of a ``QuicListener``."""

    @property
    def unauthenticated(self) -> int: ...

    @property
    def admission_stats(self) -> AdmissionStats: ...


_PREAUTH_COUNTERS = (
    ("accepted", "Connections created for peers not authenticated yet"),
    ("retries", "Connection attempts answered with a QUIC Retry (prove your address)"),
    ("refused", "Connection attempts dropped: a pre-auth cap was reached, or a bad Retry token"),
    ("discarded", "Connections dropped at once: their first datagrams did not decrypt"),
    ("expired", "Connections closed: not authenticated within the hello timeout"),
    ("authenticated", "Connections whose peer authenticated"),
)


class PreAuthCollector(Collector):
    """``edgeswarm_gateway_preauth_*``: the transport's pre-auth budget, read at scrape time."""

    def __init__(self, listener: PreAuthListener) -> None:
        self._listener = listener

    def collect(self) -> Iterator[Metric]:
        stats = self._listener.admission_stats
        for name, documentation in _PREAUTH_COUNTERS:
            yield CounterMetricFamily(
                f"edgeswarm_gateway_preauth_{name}", documentation, value=getattr(stats, name)
            )
        yield GaugeMetricFamily(
            "edgeswarm_gateway_preauth_connections",
            "Connections open now whose peer has not authenticated yet",
            value=self._listener.unauthenticated,
        )
