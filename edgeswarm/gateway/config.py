"""Configuration of a gateway process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeswarm.inference.lane import LaneConfig
from edgeswarm.placement.lease import DEFAULT_LEASE_TICKS, LeaseTerms, lease_for
from edgeswarm.placement.moves import DEFAULT_MAX_MOVES
from edgeswarm.transport.api import DEFAULT_PORT, AdmissionLimits, TransportSettings
from edgeswarm.transport.quic import DEFAULT_IDLE_TIMEOUT_S
from edgeswarm.transport.stacks import DEFAULT_STACK
from edgeswarm.wire import DEFAULT_MAX_BATCH_AGENTS, DEFAULT_MAX_FRAME_BYTES
from edgeswarm.wire.session import DEFAULT_HELLO_TIMEOUT_S

from .log.records import FsyncPolicy

DEFAULT_PEER_TIMEOUT_S = 10.0
"""A peer gateway that answers nothing this long is taken as down (``--peer-timeout``)."""


@dataclass(frozen=True, kw_only=True)
class GatewayConfig:
    """Everything a gateway needs to run; built by the CLI, passed by keyword."""

    host: str = "127.0.0.1"
    """Address to listen on for QUIC."""
    port: int = DEFAULT_PORT
    """UDP port to listen on; 0 picks a free one."""
    data_dir: Path = Path("var/gateway")
    """Directory for the gateway's certificates and state."""
    cert: Path | None = None
    """Server certificate; created in ``data_dir`` with ``key`` when not given."""
    key: Path | None = None
    """Private key of ``cert``."""
    gateway_id: str = "gateway-0"
    """Name of this gateway, reported to peers."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest frame payload accepted."""
    max_batch_agents: int = DEFAULT_MAX_BATCH_AGENTS
    """Largest number of agents accepted in one OBS_BATCH."""
    hello_timeout_s: float = DEFAULT_HELLO_TIMEOUT_S
    """Time a new connection has to complete the handshake (HELLO to WELCOME), counted
    from its first packet; the transport closes one that has no session stream by then."""
    preauth: AdmissionLimits = field(default_factory=AdmissionLimits)
    """Budget for connections not authenticated yet: caps, Retry threshold and rate
    (its ``deadline_s`` is replaced by ``hello_timeout_s`` plus a second's grace)."""
    credit_window: int = 256
    """OBS_BATCH frames an edge may have unacknowledged (lowered while the log lags)."""
    fsync: str = FsyncPolicy.NORMAL
    """Durable log policy: ``always`` (fsync every group commit; survives power loss),
    ``normal`` (survives a killed process), ``off`` (tests and benchmarks only)."""
    log_scrub_interval_s: float | None = 6 * 3600.0
    """Read the whole observation log back and check every checksum this often (the first
    time at start); None: never (``edgeswarm log verify`` still does it on demand)."""
    log_scrub_bytes_per_s: float = 32 * 1024 * 1024
    """Most payload bytes the scrub reads per second (it shares the disk with commits)."""
    max_log_backlog_bytes: int = 64 * 1024 * 1024
    """Batches waiting for the log beyond this shrink every edge's credit window."""
    stack: str = DEFAULT_STACK
    """QUIC implementation: ``aioquic`` or ``qh3``."""
    transport: TransportSettings = field(default_factory=TransportSettings)
    """QUIC tuning (datagram size, windows, socket buffers, receive batch)."""
    metrics_host: str = "127.0.0.1"
    """Address of the Prometheus endpoint."""
    metrics_port: int | None = 9464
    """Port of the Prometheus endpoint; 0 picks one; None disables it."""
    identity_key: Path | None = None
    """This gateway's ed25519 key for peer gateways; ``data_dir/identity.key`` (created) if None."""
    peers: tuple[tuple[str, int], ...] = ()
    """Peer gateways (host, port) to replicate the swarm state with."""
    peer_ca: Path | None = None
    """CA (bundle) the peer gateways' certificates chain to; this gateway's own CA if None."""
    shard_edges: bool = False
    """Split the edges with the peer gateways (the gateway ring, REDIRECT); off: every
    edge is served here, the peers only replicate."""
    peer_timeout_s: float = DEFAULT_PEER_TIMEOUT_S
    """A peer gateway that answers nothing this long is down: it leaves the gateway ring."""
    state_broadcast_s: float = 0.01
    """Longest time a merged state change waits before it is sent on to other peers."""
    heavy: LaneConfig = field(default_factory=LaneConfig)
    """The heavy inference lane: batch size and wait, queue bound, window, retries."""
    placer: str = "ring"
    """How swarm agents are placed on edges: ``ring`` (default), ``rendezvous``, ``maglev``
    (edgeswarm.placement.ring; docs/benchmarks.md, suite sharding, compares them)."""
    edge_timeout_s: float = 30.0
    """An edge whose session is gone this long is DOWN: its agents are placed elsewhere."""
    max_moves: int = DEFAULT_MAX_MOVES
    """Agents that may be on their way from one edge to another at once: a drain moves
    them in rounds of this many (``placement_edges.py``)."""
    lease_s: float | None = None
    """Placement lease granted to edges (docs/protocol.md 13.5); None: half of
    ``edge_timeout_s``. At most ``edge_timeout_s`` minus ``placement.lease.LEASE_MARGIN_S``."""
    lease_ticks: int = DEFAULT_LEASE_TICKS
    """Ticks an edge may step past its last acknowledged tick; a DOWN edge's agents resume
    this many ticks past the highest tick logged for them."""
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    """QUIC idle timeout the gateway announces: a peer silent this long (a killed edge) loses
    its session; the lower of both sides' values applies."""
    infer_oip: tuple[tuple[str, str], ...] = ()
    """(model, base URL) pairs: batches of that model go to that OIP v2 server (Triton,
    KServe, an edgeswarm node's HTTP endpoint) as well as to native nodes serving it."""

    @property
    def lease(self) -> LeaseTerms:
        """The lease terms, checked against ``edge_timeout_s`` (``LeaseError``)."""
        return lease_for(self.edge_timeout_s, self.lease_s, self.lease_ticks)
