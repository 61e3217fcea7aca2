"""The edge process: tick the agents, send their observations, apply actions.

Each tick: the world writes every agent's observation into the agent table,
each Wasm policy is called once for all its agents, actions imposed by the
gateway override the policies', the world integrates the actions, and the
observations are spooled in batches of ``batch_agents`` for the uplink to
deliver (``uplink.py``: store-and-forward, reconnects, credit). Progress and
the final summary are JSON lines on stdout; logs are JSON lines on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from edgeswarm.client.session import GatewayClient
from edgeswarm.identity import fingerprint, load_or_create_key
from edgeswarm.storage import DirectoryLock
from edgeswarm.telemetry import DaemonEndpoint, LatencyHistogram, Probes
from edgeswarm.transport.api import TransportSettings
from edgeswarm.wire import (
    FEATURE_ACK_THROUGH,
    FEATURE_HEAVY,
    FEATURE_PLACEMENT,
    FEATURE_REDIRECT,
    FEATURE_SEQ_EPOCH,
    PROTOCOL_VERSION,
    Hello,
    Role,
)

from .agent_table import AgentTable
from .batch_groups import observation_count, unverified_batch_problem
from .config import EdgeConfig
from .edge_io import open_edge_io, wait_unpaced
from .gateway_actions import apply_gateway_actions
from .heavy_lane import HeavyRequests
from .io import IoMetrics
from .io.actions_file import ActionRecorder
from .metrics import EdgeMetrics, UplinkCollector
from .module_uplink import module_uplink_for
from .observation_batches import observation_batches
from .placed_agents import PlacedAgents, placed_agents_for
from .placement_lease import PlacementLease
from .policy.loading import load_models, open_policies
from .policy.set import PolicySet
from .policy_retry import PolicyRetry
from .spool import Spool, SpoolError
from .spool_records import QuarantinedBatch
from .state_link import StateLink
from .uplink import Uplink
from .world import FlockingWorld

logger = logging.getLogger("edgeswarm.edge")

UNACKED_TICKS_AHEAD = 2
"""At ``tick_hz`` 0, a tick starts only while at most this many ticks of batches are
spooled and unacknowledged (and the gateway is connected): compute overlaps delivery,
and the spool does not fill up just because the edge computes faster than it delivers."""


def emit(record: dict[str, Any]) -> None:
    """Write one machine-readable line on stdout."""
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class EdgeRunner:
    """Runs one edge until its duration or tick count is reached, or ``stop()``.

    ``output`` receives each progress record and the summary (default: one JSON
    line each on stdout; the CLI's live view on a terminal).
    """

    def __init__(
        self, config: EdgeConfig, *, output: Callable[[dict[str, Any]], None] = emit
    ) -> None:
        self.config = config
        self._output = output
        self._lock = DirectoryLock(config.data_dir, name="edge", owner="edge")
        """One edge per data directory (its spool and state have one writer)."""
        try:
            self._open(config)
        except BaseException:
            self._lock.close()
            raise

    def _open(self, config: EdgeConfig) -> None:
        self.metrics = EdgeMetrics()
        self.table = AgentTable.create(
            count=config.initial_agents,
            obs_dim=FlockingWorld.OBS_DIM,
            state_dim=2,
            act_dim=2,
            first_id=config.first_agent_id,
        )
        self.io_metrics = IoMetrics(self.metrics.registry)
        self.io, self.world = open_edge_io(config, self.table, self.io_metrics)
        """Where observations come from and actions go; the world when ``--io sim``."""
        self.actions_out: ActionRecorder | None = None
        self.key = load_or_create_key(config.key_file or config.data_dir / "edge.key")
        self.spool = Spool(
            config.data_dir / "spool.db",
            max_bytes=config.spool_max_bytes,
            overflow=config.overflow,
            count_of=observation_count,  # for a spool written before counts were stored
            check_unverified=unverified_batch_problem,  # ... or before checksums
            fsync=config.spool_fsync,
        )
        self.state = StateLink(
            config.data_dir / "state",
            writer_id=config.edge_id,
            on_store_error=self.metrics.storage_errors.labels("state").inc,
        )
        """Swarm document the policies write to, synced with the gateway."""
        self.modules = module_uplink_for(config, self.table, self.metrics.registry)
        self.uplink = Uplink(
            hello=Hello(
                version=PROTOCOL_VERSION,
                role=Role.EDGE,
                peer_id=config.edge_id,
                public_key=self.key.public_key,
                agents=config.initial_agents,
                join_token=config.join_token,
                features=(
                    *StateLink.features,
                    FEATURE_ACK_THROUGH,
                    FEATURE_HEAVY,
                    FEATURE_SEQ_EPOCH,
                    FEATURE_REDIRECT,
                    *self.modules.features,
                    *((FEATURE_PLACEMENT,) if config.placement else ()),
                ),
                seq_epoch=self.spool.seq_epoch,
                state_incarnation=self.state.document.incarnation,
            ),
            key=self.key,
            gateway=config.gateway,
            more_gateways=config.more_gateways,
            spool=self.spool,
            ack_timeout_s=config.ack_timeout_s,
            on_client=self.modules.attach_with(self._client_created),
            on_quarantine=self._on_quarantine,
            transport=TransportSettings(max_datagram_size=config.max_datagram_size),
            on_ack_latency=self.metrics.ack_latency.observe,
        )
        self.metrics.registry.register(UplinkCollector(self.uplink))
        self.carried_batches = len(self.spool)
        """Batches an earlier run left in the spool (sent first, counted as acked)."""
        self.carried_observations = self.spool.count_through(self.spool.next_seq())
        self.probes = Probes(self.not_ready)
        """``/healthz`` and ``/readyz`` beside ``/metrics``."""
        self.policies_loaded = False
        self.heavy = HeavyRequests(deadline_ms=config.heavy_deadline_ms)
        """Policies' heavy-lane requests and their results (``heavy_request`` imports)."""
        self.tick = 0
        self.metrics_port: int | None = None
        """Port of ``/metrics`` once running (the real one when 0 was asked for)."""
        self._stop = asyncio.Event()
        self._started = 0.0
        self._acked_reported = 0
        self.actions_applied = 0
        """Agent actions overridden by the gateway (ACTIONS frames or datagrams)."""
        self.policy_retry = PolicyRetry(config.policy_retry_s, self.metrics)
        self._world_repairs = 0
        """``world.nonfinite_repairs`` already counted in the metrics."""
        self.placed: PlacedAgents | None = None
        """With ``--placement``: the agents the gateway assigns (set once policies load)."""
        self.lease = PlacementLease(self.metrics)
        """With ``--placement``: placed agents step only while the gateway's lease holds."""
        self.stage_seconds: dict[str, float] = {}
        """Time spent in each stage of the ticks (``sense``, ``step``, ``apply``, ``spool``)."""

    def stop(self) -> None:
        """Finish the current tick, drain the spool (bounded), say BYE."""
        self._stop.set()

    def not_ready(self) -> list[str]:
        """What keeps the edge from doing its job now (``/readyz``): its policies are not
        loaded yet, or it is neither connected nor able to spool (spool full, refused)."""
        problems = []
        if not self.policies_loaded:
            problems.append("policies not loaded yet")
        uplink = self.uplink
        if uplink.refused is not None:
            problems.append(f"refused by the gateway: {uplink.refused}")
        elif not uplink.connected and self.spool.bytes >= self.config.spool_max_bytes:
            problems.append(f"gateway unreachable and the spool is full ({self.spool.bytes} bytes)")
        return problems

    async def run(self) -> dict[str, Any]:
        """Run the edge; returns the summary it also prints."""
        with self._lock:
            return await self._run()

    async def _run(self) -> dict[str, Any]:
        config = self.config
        endpoint = None
        if config.metrics_port is not None:
            endpoint = DaemonEndpoint(
                self.metrics.registry,
                self.probes,
                host=config.metrics_host,
                port=config.metrics_port,
            )
            self.metrics_port = endpoint.port
        heartbeat = asyncio.create_task(self.probes.keep_beating())
        try:
            return await self._serve()
        finally:
            heartbeat.cancel()
            if endpoint is not None:
                endpoint.close()

    async def _serve(self) -> dict[str, Any]:
        config = self.config
        self.metrics.agents.set(config.initial_agents)
        logger.info(
            "edge starting",
            extra={
                "edge_id": config.edge_id,
                "agents": config.initial_agents,
                "placement": config.placement,
                "key": fingerprint(self.key.public_key),
                "spooled": len(self.spool),
                "metrics_port": self.metrics_port,
            },
        )
        with (
            self.spool,
            self.state,
            load_models(config.models) as models,
            open_policies(
                config.policies,
                self.table,
                fallback=config.policy_fallback,
                fuel_per_agent=config.policy_fuel_per_agent,
                host_calls_per_agent=config.policy_host_calls_per_agent,
                memory_mb=config.policy_memory_mb,
                deadline_s=config.policy_deadline_s,
                compile_limits=config.compile_limits,
                cache_dir=config.module_cache_dir or config.data_dir / "modules",
                seed=config.seed,
                models=models,
                swarm=self.state.swarm,
                heavy=self.heavy,
                on_fault=self.policy_retry.faulted,
            ) as policies,
        ):
            self.modules.start(policies)
            self.policies_loaded = True
            if config.placement:
                self.placed = placed_agents_for(config, self.table, self.world, policies)
            self.metrics.policies_loaded([policies.name_of(slot) for slot in range(len(policies))])
            await self.io.start()
            if config.actions_out is not None:
                self.actions_out = ActionRecorder(config.actions_out)
            delivery = asyncio.create_task(self.uplink.run())
            delivery.add_done_callback(self._delivery_ended)
            syncing = asyncio.create_task(self.state.run())
            leasing = asyncio.create_task(self.lease.keep()) if config.placement else None
            self._started = time.monotonic()
            try:
                await self._tick_loop(policies)
                failed = (
                    None if not delivery.done() or delivery.cancelled() else delivery.exception()
                )
                if failed is not None:  # the spool failed, or the gateway refused us: say so
                    raise failed
                if not await self.uplink.drain(config.drain_timeout_s):
                    logger.warning(
                        "unacknowledged batches at stop; they stay spooled for the next start",
                        extra={"spooled": self.uplink.spooled},
                    )
                await self.state.flush()
            finally:
                await self.io.close()
                if self.actions_out is not None:
                    self.actions_out.close()
                syncing.cancel()
                if leasing is not None:
                    leasing.cancel()
                self.uplink.stop()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    async with asyncio.timeout(2.0):
                        await delivery
                if not delivery.done():
                    delivery.cancel()
            quarantined = policies.quarantined_count
            faults = {f"{name}/{kind}": n for (name, kind), n in policies.fault_counts.items()}
            summary = self._snapshot("summary")
            summary["swarm_state"] = self.state.document.snapshot()
            summary["modules"] = self.modules.versions()
        summary["policies_quarantined"] = quarantined
        summary["policy_faults"] = faults
        summary["latency_hist"] = self._latency().to_sparse()
        summary["stage_ms"] = {
            stage: round(seconds * 1e3 / max(1, self.tick), 3)
            for stage, seconds in self.stage_seconds.items()
        }
        self._output(summary)
        return summary

    async def _tick_loop(self, policies: PolicySet) -> None:
        config = self.config
        period = 1.0 / config.tick_hz if config.tick_hz > 0 else 0.0
        next_tick = time.monotonic()
        next_progress = next_tick + config.progress_interval_s
        while not self._stop.is_set():
            now = time.monotonic()
            if config.duration_s is not None and now - self._started >= config.duration_s:
                break
            if config.ticks is not None and self.tick >= config.ticks:
                break
            if getattr(self.io.source, "finished", False):  # a recording ended
                break
            if period == 0.0:  # as fast as acknowledged: a bounded lead over the ACKs
                per_tick = -(-len(self.table) // config.batch_agents)  # agents may come and go
                await self.uplink.wait_acked(UNACKED_TICKS_AHEAD * per_tick)
            # The loop serves the network (sends, ACKs) between the stages of a tick.
            started = time.perf_counter()
            if self.placed is not None and self.placed.apply() is not None:
                self.metrics.agents.set(len(self.table))  # agents came or went (placement)
            if self.placed is not None and not self.lease.may_step(self.tick, len(self.table)):
                await self.lease.wait_change(max(period, 0.05))  # fenced: step nothing
                next_tick, next_progress = time.monotonic(), self._progress(next_progress)
                continue
            self.policy_retry.retry_due(policies)
            self.io.source.sense(self.table, self.table.fresh, time.monotonic())
            self._stage("sense", started)
            await asyncio.sleep(0)
            mark = time.perf_counter()
            client = self.uplink.client
            self.heavy.receive(client.results if client is not None else None, time.monotonic())
            self.modules.step(policies, self.table)  # applies assignments, steps, reports
            self.heavy.send(client, self.table, self.tick, time.monotonic())
            self._apply_gateway_actions()
            self._stage("step", mark)
            await asyncio.sleep(0)
            mark = time.perf_counter()
            if self.actions_out is not None:
                self.actions_out.write(self.tick, self.table)
            self.io.sink.act(self.table, self.table.fresh)
            self._count_world_repairs()
            self._stage("apply", mark)
            self.metrics.tick_seconds.observe(time.perf_counter() - started)
            self.metrics.policies_quarantined.set(policies.quarantined_count)
            mark = time.perf_counter()
            await self._send_observations()
            self._stage("spool", mark)
            if self.placed is not None:
                self.lease.spooled(self.tick, self.spool.next_seq() - 1)
                self.placed.after_tick(self.tick, self.uplink.client)
            self.tick += 1
            self.metrics.ticks.inc()
            next_progress = self._progress(next_progress)
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            else:
                next_tick = time.monotonic()
                await wait_unpaced(self.io.source)

    def _progress(self, due: float) -> float:
        """A progress record when ``due`` (monotonic); returns when the next one is."""
        if self.config.progress_interval_s <= 0 or time.monotonic() < due:
            return due
        self._output(self._snapshot("progress"))
        return due + self.config.progress_interval_s

    def _client_created(self, client: GatewayClient) -> None:
        self.state.attach(client)
        if self.placed is not None:
            self.lease.attach(client, self.placed.receive)

    def _count_world_repairs(self) -> None:
        if self.world is None:
            return
        new = self.world.nonfinite_repairs - self._world_repairs
        if new:
            self._world_repairs = self.world.nonfinite_repairs
            self.metrics.world_repairs.inc(new)
            logger.warning(
                "non-finite agent state repaired (actions dropped, agents stopped)",
                extra={"agents": new, "tick": self.tick},
            )

    def _delivery_ended(self, delivery: asyncio.Task[None]) -> None:
        """The uplink stopped by itself (its spool failed, or the gateway refused this edge
        for good): stop stepping, say why at exit."""
        if delivery.cancelled() or delivery.exception() is None:
            return
        if isinstance(delivery.exception(), SpoolError):
            self.metrics.storage_errors.labels("spool").inc()
        self._stop.set()

    def _on_quarantine(self, batch: QuarantinedBatch) -> None:
        self.metrics.spool_quarantined.labels(str(batch.reason)).inc()

    def _stage(self, stage: str, since: float) -> None:
        """Add the time since ``since`` to ``stage`` (the summary's ``stage_ms``)."""
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + (
            time.perf_counter() - since
        )

    async def _send_observations(self) -> None:
        """Spool this tick's observations, ``batch_agents`` per batch, as one group commit."""
        table, placed = self.table, self.placed
        batches = observation_batches(  # with placement: per agent, the tick it steps now
            table,
            self.tick,
            self.config.batch_agents,
            None if placed is None else placed.stepping_ticks(),
        )
        try:
            await self.uplink.submit(batches)
        except SpoolError as exc:  # a damaged file, an I/O error: the edge stops
            self.metrics.storage_errors.labels("spool").inc()
            logger.error(
                "spool failed; the edge stops",
                extra={"spool": str(self.spool.path), "error": str(exc)},
            )
            raise
        self.metrics.observations_sent.inc(len(table))
        self._sync_metrics()

    def _apply_gateway_actions(self) -> None:
        client = self.uplink.client
        if client is not None:
            self.actions_applied += apply_gateway_actions(
                self.table, client.actions, ids_in_order=self.placed is None
            )

    def _latency(self) -> LatencyHistogram:
        client = self.uplink.client
        return client.latency if client is not None else LatencyHistogram()

    def _sync_metrics(self) -> None:
        counters = self.uplink.counters
        delta = counters.acked_observations - self._acked_reported
        if delta > 0:
            self.metrics.observations_acked.inc(delta)
            self._acked_reported = counters.acked_observations
        self.metrics.batches_in_flight.set(self.uplink.spooled)

    def _snapshot(self, event: str) -> dict[str, Any]:
        counters, latency = self.uplink.counters, self._latency()
        elapsed = time.monotonic() - self._started if self._started else 0.0
        return {
            "event": event,
            "edge_id": self.config.edge_id,
            "tick": self.tick,
            "agents": len(self.table),
            "elapsed_s": round(elapsed, 3),
            "connected": self.uplink.connected,
            "observations_sent": counters.observations,
            "observations_acked": counters.acked_observations,
            "batches_sent": counters.batches,
            "batches_acked": counters.acked_batches,
            "batches_resent": counters.resent_batches,
            "batches_carried_over": self.carried_batches,
            "observations_carried_over": self.carried_observations,
            "in_flight": self.uplink.spooled,
            "spooled_bytes": self.spool.bytes,
            "payload_bytes": counters.payload_bytes,
            "dropped_batches": counters.dropped_batches,
            "spool_disk_full_waits": counters.disk_full_waits,
            "dropped_observations": counters.dropped_observations,
            "quarantined_batches": counters.quarantined_batches,
            "quarantined_observations": counters.quarantined_observations,
            "connects": counters.connects,
            "redirects": counters.redirects,
            "gateway": str(self.uplink.gateway),
            "actions_applied": self.actions_applied,
            "ack_p50_ms": round(latency.quantile(0.50) * 1e3, 3),
            "ack_p99_ms": round(latency.quantile(0.99) * 1e3, 3),
            "heavy_requests": self.heavy.counters.requests,
            "heavy_rows": self.heavy.counters.rows,
            "heavy_results": dict(self.heavy.counters.results),
            "heavy_outstanding_rows": self.heavy.outstanding_rows,
            "heavy_p99_ms": round(self.heavy.latency.quantile(0.99) * 1e3, 3),
            **self.lease.figures(),
        }


def install_stop_signals(runner: EdgeRunner) -> None:
    """SIGINT and SIGTERM stop the runner gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
