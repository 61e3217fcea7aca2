"""Every chaos scenario, in the order ``scripts/chaos`` runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeswarm.chaos import (
    clock_faults,
    disk_faults,
    gateway_failover,
    inference_faults,
    io_faults,
    network_faults,
    peer_faults,
    placement_faults,
    placement_partition,
    process_faults,
    rollout_faults,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    """What ``scripts/chaos NAME`` and the JSON line's ``scenario`` call it."""
    summary: str
    """One line for ``--list``."""
    run: Callable[[Path], dict[str, Any]]
    """Runs it in a fresh working directory; returns its JSON line."""
    namespace: bool = False
    """Runs in a network and mount namespace of its own (nftables, tc, tmpfs)."""
    tools: tuple[str, ...] = ()
    """Commands it needs besides unshare and ip."""
    skip_reason: str = ""
    """Set when the scenario cannot pass on main yet: it reports skipped, never a pass."""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("gateway_kill9", "kill -9 of the gateway under load, restart: spool replays",
             process_faults.gateway_kill9),
    Scenario("edge_kill9", "kill -9 of the edge under load, restart: its spool replays",
             process_faults.edge_kill9),
    Scenario("edge_kill9_replacement", "an edge killed: its agents re-placed from checkpoints",
             placement_faults.edge_kill9_replacement),
    Scenario("packet_loss_10", "10 % of packets each way dropped at random (nftables)",
             network_faults.packet_loss_10, namespace=True, tools=("nft",)),
    Scenario("latency_jitter_reorder", "50 ms +- 20 ms each way through a UDP relay: reorders",
             network_faults.latency_jitter_reorder),
    Scenario("bandwidth_cap", "loopback capped at 4 Mbit/s (tc tbf)",
             network_faults.bandwidth_cap, namespace=True, tools=("tc",)),
    Scenario("partition_edge_gateway", "edge cut off its gateway for 5 s, then healed",
             network_faults.partition_edge_gateway, namespace=True, tools=("nft",)),
    Scenario("partition_edge_gateway_placement",
             "a placement edge cut off past --edge-timeout: fenced, re-placed, healed",
             placement_partition.partition_edge_gateway_placement, namespace=True,
             tools=("nft",)),
    Scenario("gateway_disk_full", "gateway's disk full for 3 s: stops acking, then recovers",
             disk_faults.gateway_disk_full, namespace=True, tools=("mount",)),
    Scenario("edge_disk_full", "edge's disk full: it waits for room, then delivers all",
             disk_faults.edge_disk_full, namespace=True, tools=("mount",)),
    Scenario("slow_gateway", "gateway stopped 80 % of the time: back-pressure, bounded memory",
             process_faults.slow_gateway),
    Scenario("mqtt_broker_restart", "Mosquitto between sensors and edge restarted under load",
             io_faults.mqtt_broker_restart),
    Scenario("partition_gateways", "two peered gateways cut apart, then healed: CRDT converges",
             peer_faults.partition_gateways),
    Scenario("gateway_failover", "an edge's gateway killed: it fails over to a peer, then back",
             gateway_failover.gateway_failover),
    Scenario("inference_node_kill", "inference node killed mid-batch: answered exactly once",
             inference_faults.inference_node_kill),
    Scenario("clock_jump_edge", "an edge's wall clock jumps back 1 h, then forward 2 h",
             clock_faults.clock_jump_edge),
    Scenario("rollout_trapping_module", "rollout of a trapping module under load: rollback",
             rollout_faults.rollout_trapping_module),
)  # fmt: skip
