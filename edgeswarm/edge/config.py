"""Configuration of an edge process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeswarm.client.address import GatewayAddress
from edgeswarm.storage import FsyncPolicy
from edgeswarm.transport.api import INTERNET_DATAGRAM_SIZE

from .heavy_lane import DEFAULT_HEAVY_DEADLINE_MS
from .policy.compiler import CompileLimits
from .policy.loading import step_deadline_s
from .policy.sandbox import (
    DEFAULT_FUEL_PER_AGENT,
    DEFAULT_HOST_CALLS_PER_AGENT,
    DEFAULT_MEMORY_LIMIT,
)
from .policy.set import DEFAULT_FALLBACK
from .spool import DEFAULT_MAX_BYTES, OverflowPolicy

_COMPILE = CompileLimits()
_MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class EdgeConfig:
    """Everything an edge needs to run; built by the CLI, passed by keyword."""

    edge_id: str
    """Stable name of this edge, sent in HELLO (as ``peer_id``) and stored with every batch."""
    gateway: GatewayAddress
    """The gateway to deliver to: host, port, pinned CA, certificate name, QUIC stack."""
    more_gateways: tuple[GatewayAddress, ...] = ()
    """Further gateways (``--gateway`` repeated), tried in turn when one fails."""
    data_dir: Path = Path("var/edge")
    """Where the edge keeps its key and its spool."""
    key_file: Path | None = None
    """The edge's ed25519 private key; ``data_dir/edge.key``, created on first start, if None."""
    join_token: str | None = None
    """Join token to enroll the key on first contact (``edgeswarm keys issue``)."""
    spool_max_bytes: int = DEFAULT_MAX_BYTES
    """Bound of the on-disk spool of unacknowledged batches."""
    spool_fsync: str = FsyncPolicy.NORMAL
    """Durability of spooled batches: ``normal`` (survive ``kill -9`` of the edge),
    ``always`` (on stable storage before they are sent; synced off the tick thread) or
    ``off`` (left to the OS)."""
    max_datagram_size: int = INTERNET_DATAGRAM_SIZE
    """Largest UDP payload sent to the gateway. Above 1350 (on a LAN), qh3 probes the path
    up to it and falls back when big packets are lost; aioquic sends it as it is."""
    overflow: str = OverflowPolicy.BLOCK
    """When the spool is full: ``block`` (stop stepping until acks make room) or
    ``drop_oldest`` (drop the oldest batches, counted and logged)."""
    agents: int = 10_000
    """Number of agents this edge runs."""
    first_agent_id: int = 0
    placement: bool = False
    """Run the agents the gateway assigns (ASSIGN frames) instead of ``agents`` from
    ``first_agent_id`` (``--placement``; docs/operations.md, Placement)."""
    checkpoint_interval: int = 10
    """With ``placement``: send the agents' state rows every this many ticks (0: never)."""
    """Id of the first agent; ids are consecutive."""
    policies: tuple[str, ...] = ("boids",)
    """Wasm policies, each a built-in name or a ``.wasm``/``.wat`` path; the
    agents are split into equal contiguous groups, one per policy."""
    policy_fallback: str = DEFAULT_FALLBACK
    """Action of a quarantined policy's agents: ``zero`` or ``hold`` (last action)."""
    policy_fuel_per_agent: int = DEFAULT_FUEL_PER_AGENT
    """Fuel each policy gets per agent per step (plus a fixed base per call:
    ``FuelBudget.base``)."""
    policy_host_calls_per_agent: int = DEFAULT_HOST_CALLS_PER_AGENT
    """Host calls each policy step may make per agent (plus a fixed ``HostCallCap.base``)."""
    policy_memory_mb: int = DEFAULT_MEMORY_LIMIT >> 20
    """Linear memory limit of each policy instance, MiB."""
    policy_deadline_ms: float | None = None
    """Wall-clock limit of one policy call, ms; None: half the tick period shared
    equally by the policies (25 ms each for two policies at 10 Hz; a tick period of
    100 ms is assumed when ``tick_hz`` is 0)."""
    module_max_mb: float = _COMPILE.max_module_bytes / _MIB
    """Largest policy module accepted (binary or WAT text), MiB."""
    module_max_functions: int = _COMPILE.max_functions
    """Most functions a policy module may define."""
    compile_memory_mb: int = _COMPILE.memory_bytes // _MIB
    """Address-space limit of the child process that compiles a module, MiB."""
    compile_timeout_s: float = _COMPILE.timeout_s
    """Wall-clock limit of compiling one module, seconds."""
    policy_retry_s: float | None = None
    """Re-enable a quarantined policy after this many seconds; None keeps it stopped."""
    models: tuple[Path, ...] = ()
    """LiteRT ``.tflite`` models callable from policies, registered under their file stem."""
    heavy_deadline_ms: int = DEFAULT_HEAVY_DEADLINE_MS
    """How long the gateway has to answer a policy's heavy-lane request (``heavy_request``);
    the answer (or a TIMEOUT) reaches the policy within a tick of it at 10 Hz."""
    module_cache_dir: Path | None = None
    """Compiled Wasm modules kept across restarts; ``data_dir/modules`` if None."""
    modules: tuple[tuple[str, int], ...] = ()
    """Registry modules the gateway assigns, each with the policy slot it runs in
    (``--module NAME[=SLOT]``); empty: the edge does not take part in distribution."""
    labels: frozenset[str] = frozenset()
    """This edge's labels, for rollouts limited to labelled edges (``--label``)."""
    module_report_ticks: int = 10
    """Ticks between two MODULE_REPORTs (a rollout's ticks are these reports)."""
    seed: int = 0
    """Seed of the environment; same seed, same run."""
    io: str = "sim"
    """Where observations come from and actions go (``--io``): ``sim``, ``mqtt://...``,
    ``replay:PATH`` or a plug-in's name (docs/io.md)."""
    obs_max_age_s: float | None = None
    """An agent whose source has been silent longer than this is stale: masked for the
    policy, its actions not published (``--obs-max-age``; None: never stale)."""
    actions_out: Path | None = None
    """Record every tick's actions here (``edgeswarm replay`` compares such files)."""
    tick_hz: float = 10.0
    """Ticks per second; 0 runs as fast as the gateway acknowledges."""
    batch_agents: int = 2048
    """Agents per OBS_BATCH frame."""
    duration_s: float | None = None
    """Stop after this many seconds; None runs until signalled."""
    ticks: int | None = None
    """Stop after this many ticks; None runs until signalled."""
    drain_timeout_s: float = 10.0
    """On stop, how long to wait for outstanding acks."""
    ack_timeout_s: float = 5.0
    """Batches outstanding with no ACK for this long: the gateway is taken as gone and the
    edge reconnects (to the next ``--gateway`` when there are several)."""
    progress_interval_s: float = 1.0
    """Seconds between progress lines on stdout; 0 disables them."""
    metrics_host: str = "127.0.0.1"
    """Address of the Prometheus endpoint."""
    metrics_port: int | None = 9465
    """Port of the Prometheus endpoint; 0 picks one; None disables it."""

    @property
    def initial_agents(self) -> int:
        """Agents the edge starts with: ``agents``, or none until the gateway assigns some."""
        return 0 if self.placement else self.agents

    @property
    def compile_limits(self) -> CompileLimits:
        """The edge's bounds on policy modules and on compiling them."""
        return CompileLimits(
            max_module_bytes=int(self.module_max_mb * _MIB),
            max_functions=self.module_max_functions,
            memory_bytes=self.compile_memory_mb * _MIB,
            timeout_s=self.compile_timeout_s,
        )

    @property
    def policy_deadline_s(self) -> float:
        """Wall-clock limit of one policy call (``--policy-deadline-ms`` or derived)."""
        return step_deadline_s(
            deadline_ms=self.policy_deadline_ms,
            tick_hz=self.tick_hz,
            policies=len(self.policies),
        )
