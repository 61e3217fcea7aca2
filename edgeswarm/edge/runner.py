"""The edge process: tick the agents, send their observations, apply actions.

Each tick: the world writes every agent's observation into the agent table,
each Wasm policy is called once for all its agents, actions imposed by the
gateway override the policies', the world integrates the actions, and the
observations go to the gateway in batches of ``batch_agents``. Progress and
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
from typing import Any

import numpy as np

from edgeswarm.agents_wasm import module_path
from edgeswarm.telemetry import start_metrics_server
from edgeswarm.transport import quic
from edgeswarm.wire import PROTOCOL_VERSION, Hello, ObservationBatch, Role

from .agent_table import AgentTable
from .client import GatewayClient, SessionEndedError
from .config import EdgeConfig
from .metrics import EdgeMetrics
from .policy_set import PolicySet
from .wasm_host import WasmPolicy
from .world import FlockingWorld

log = logging.getLogger("edgeswarm.edge")


def emit(record: dict[str, Any]) -> None:
    """Write one machine-readable line on stdout."""
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class EdgeRunner:
    """Runs one edge until its duration or tick count is reached, or ``stop()``."""

    def __init__(self, config: EdgeConfig) -> None:
        self.config = config
        self.metrics = EdgeMetrics()
        self.table = AgentTable.create(
            count=config.agents,
            obs_dim=FlockingWorld.OBS_DIM,
            state_dim=2,
            act_dim=2,
            first_id=config.first_agent_id,
        )
        self.world = FlockingWorld(config.agents, seed=config.seed)
        self.client = GatewayClient(
            Hello(
                version=PROTOCOL_VERSION,
                role=Role.EDGE,
                peer_id=config.edge_id,
                agents=config.agents,
            ),
            window=config.window,
        )
        self.tick = 0
        self._seq = 0
        self._stop = asyncio.Event()
        self._started = 0.0

    def stop(self) -> None:
        """Finish the current tick, drain acks, say BYE."""
        self._stop.set()

    async def run(self) -> dict[str, Any]:
        """Run the edge; returns the summary it also prints."""
        config = self.config
        if config.metrics_port is not None:
            start_metrics_server(config.metrics_port, self.metrics.registry, config.metrics_host)
        self.metrics.agents.set(config.agents)
        policy = WasmPolicy(module_path(config.policy))
        with PolicySet([policy]) as policies:
            async with quic.connect(
                config.gateway_host,
                config.gateway_port,
                ca_file=config.ca_file,
                handler=self.client,
                server_name=config.server_name,
            ):
                welcome = await self.client.wait_welcomed()
                log.info(
                    "connected",
                    extra={
                        "gateway_id": welcome.gateway_id,
                        "session_id": welcome.session_id,
                        "edge_id": config.edge_id,
                        "agents": config.agents,
                    },
                )
                self._started = time.monotonic()
                try:
                    await self._tick_loop(policies)
                except SessionEndedError as exc:
                    log.error("session ended", extra={"reason": str(exc)})
                drained = await self.client.drain(config.drain_timeout_s)
                if not drained:
                    log.warning(
                        "unacknowledged batches at stop", extra={"in_flight": self.client.in_flight}
                    )
                self.client.close("edge stopping")
                await asyncio.sleep(0.05)  # let the BYE leave before the connection closes
            quarantined = policies.quarantined_count
        summary = self._snapshot("summary")
        summary["policies_quarantined"] = quarantined
        summary["latency_hist"] = self.client.latency.to_sparse()
        emit(summary)
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
            started = time.perf_counter()
            self.world.sense(self.table)
            policies.step(self.table)
            self._apply_gateway_actions()
            self.world.apply(self.table.actions)
            self.metrics.tick_seconds.observe(time.perf_counter() - started)
            self.metrics.policies_quarantined.set(policies.quarantined_count)
            await self._send_observations()
            self.tick += 1
            self.metrics.ticks.inc()
            if config.progress_interval_s > 0 and time.monotonic() >= next_progress:
                emit(self._snapshot("progress"))
                next_progress += config.progress_interval_s
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
            else:
                next_tick = time.monotonic()
                await asyncio.sleep(0)

    async def _send_observations(self) -> None:
        table, step = self.table, self.config.batch_agents
        for start in range(0, len(table), step):
            end = min(start + step, len(table))
            self._seq += 1
            await self.client.send_batch(
                ObservationBatch(
                    seq=self._seq,
                    tick=self.tick,
                    agent_ids=table.ids[start:end],
                    observations=table.observations[start:end],
                    rewards=table.rewards[start:end],
                )
            )
            self.metrics.observations_sent.inc(end - start)
        self._sync_metrics()

    def _apply_gateway_actions(self) -> None:
        table = self.table
        first = int(table.ids[0]) if len(table) else 0
        while self.client.actions:
            actions = self.client.actions.popleft()
            rows = actions.agent_ids.astype(np.int64) - first
            valid = (rows >= 0) & (rows < len(table))
            if actions.actions.shape[1] != table.actions.shape[1]:
                log.warning(
                    "actions with the wrong width ignored",
                    extra={"width": actions.actions.shape[1]},
                )
                continue
            table.actions[rows[valid]] = actions.actions[valid]

    def _sync_metrics(self) -> None:
        counters = self.client.counters
        acked_delta = counters.acked_observations - self._acked_reported
        if acked_delta:
            self.metrics.observations_acked.inc(acked_delta)
            self._acked_reported = counters.acked_observations
        self.metrics.batches_in_flight.set(self.client.in_flight)

    _acked_reported = 0

    def _snapshot(self, event: str) -> dict[str, Any]:
        counters, latency = self.client.counters, self.client.latency
        elapsed = time.monotonic() - self._started if self._started else 0.0
        return {
            "event": event,
            "edge_id": self.config.edge_id,
            "tick": self.tick,
            "agents": self.config.agents,
            "elapsed_s": round(elapsed, 3),
            "observations_sent": counters.sent_observations,
            "observations_acked": counters.acked_observations,
            "batches_sent": counters.sent_batches,
            "batches_acked": counters.acked_batches,
            "in_flight": self.client.in_flight,
            "errors_received": counters.errors_received,
            "ack_p50_ms": round(latency.quantile(0.50) * 1e3, 3),
            "ack_p99_ms": round(latency.quantile(0.99) * 1e3, 3),
        }


def install_stop_signals(runner: EdgeRunner) -> None:
    """SIGINT and SIGTERM stop the runner gracefully."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, runner.stop)
