"""An edge's gateway killed under load: the edge fails over to a peer gateway, and back.

Gateways ``gw-a`` and ``gw-b`` peer with each other (``--peer``, ``--shard-edges``,
``--peer-timeout 1.5``), each enrolling the other and the edge. The edge's id is one the
gateway ring gives to gw-a, but its ``--gateway`` is gw-b: gw-b redirects it to gw-a at
the handshake. Under load gw-a is killed with SIGKILL: the edge's session stalls, it
goes back to gw-b, which owns the edge once it stops hearing gw-a. gw-a is restarted on
the same port and data directory: gw-b sees the ring change and redirects the edge to it
again. The edge is then stopped with SIGTERM and drains.

Delivery across a failover is at least once: a batch one gateway stored but whose ACK
never reached the edge is sent again to the other, so a batch stored at both gateways is
counted (``stored_at_both``), not failed on. Within one gateway's log a batch is never
stored or applied twice (``duplicates_applied``), and every batch the edge sent is in
one log or the other (``acked_lost``): both logs are read after both gateways stopped.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeswarm.chaos.processes import (
    GatewayProcess,
    ProgressLines,
    edgeswarm_command,
    kill9,
    logged_batches,
    start_gateway,
    stop,
    wait_until,
)
from edgeswarm.chaos.verdict import edge_checks, finish, rate
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity import load_or_create_key
from edgeswarm.placement.gateways import GatewayRing, RingPeer
from edgeswarm.transport import ensure_certificates
from edgeswarm.wire import Role

OWNER, SURVIVOR = "gw-a", "gw-b"
LOAD = ("--agents", "400", "--tick-hz", "50", "--batch-agents", "200",
        "--duration", "150", "--drain-timeout", "60")  # fmt: skip
"""400 agents at 50 Hz in batches of 200: 100 batches and 20 000 observations a second;
``--duration`` only bounds an edge the scenario failed to stop."""
RING_TIMEOUT_S = 30.0
"""Both gateways started to both rings holding two gateways."""
FAILOVER_BOUND_S = 30.0
"""kill -9 to the survivor's first batch: the edge's ACK timeout (5 s), or the survivor's
``--peer-timeout`` if later, and a reconnect, on a loaded machine."""
FAILBACK_BOUND_S = 45.0
"""Restart command to the owner's first new batch: the owner's start, the peer link
coming up again, the survivor's REDIRECT, the edge's reconnect."""


@dataclass(frozen=True)
class PeeredGateways:
    """Where gw-a and gw-b live: a data directory each under ``work``, fixed ports (a
    restarted gateway comes back on its own) and CAs (each pins the other's)."""

    work: Path
    ports: dict[str, int]
    cas: dict[str, Path]

    def start(self, name: str) -> GatewayProcess:
        other = SURVIVOR if name == OWNER else OWNER
        return start_gateway(
            self.work / name, "--gateway-id", name, "--peer", f"127.0.0.1:{self.ports[other]}",
            "--peer-ca", str(self.cas[other]), "--peer-timeout", "1.5", "--shard-edges",
            port=self.ports[name],
        )  # fmt: skip


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _edge_owned_by_owner() -> str:
    """An edge id the ring of gw-a and gw-b gives to gw-a."""
    ring = GatewayRing(OWNER)
    ring.peer_up(RingPeer(SURVIVOR, "127.0.0.1", 1))
    for i in range(1000):
        if ring.owner(edge_id := f"chaos-edge-{i}") is None:
            return edge_id
    raise AssertionError("the ring gives gw-a no edge")


def _enroll(work: Path, edge_id: str) -> PeeredGateways:
    """Certificates and identity keys of both gateways, each enrolling the other and the
    edge's key; the CA bundle the edge trusts (both CAs) is written to work/fleet-ca.crt."""
    names = (OWNER, SURVIVOR)
    cas = {name: ensure_certificates(work / name).ca for name in names}
    keys = {name: load_or_create_key(work / name / "identity.key") for name in names}
    edge_key = load_or_create_key(work / "edge" / "edge.key")
    for name, other in (names, names[::-1]):
        with PeerRegistry(work / name / "peers.db") as registry:
            registry.add_peer(keys[other].public_key, other, Role.GATEWAY)
            registry.add_peer(edge_key.public_key, edge_id, Role.EDGE)
    (work / "fleet-ca.crt").write_text("".join(cas[name].read_text() for name in names))
    return PeeredGateways(work, {name: _free_udp_port() for name in names}, cas)


def _ring_size(gateway: GatewayProcess) -> int:
    """Gateways in ``gateway``'s ring as its last "gateway ring changed" log line says."""
    size = 1
    for line in (gateway.data_dir / "gateway.log").read_text().splitlines():
        if "gateway ring changed" in line:
            size = len(json.loads(line).get("gateways", ()))
    return size


def _start_edge(edge_id: str, work: Path, port: int) -> subprocess.Popen[str]:
    """The edge, given only gw-b; JSON progress lines on stdout every 0.2 s."""
    with (work / "edge" / "edge.log").open("a") as stderr:
        return subprocess.Popen(
            edgeswarm_command(
                "edge", "--edge-id", edge_id, "--ca", str(work / "fleet-ca.crt"),
                "--gateway", f"127.0.0.1:{port}", "--data-dir", str(work / "edge"),
                "--metrics-port", "-1", "--progress-interval", "0.2", "--json", *LOAD,
            ),
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip


def _seconds_until(
    done: Callable[[], bool], since: float, bound: float, edge: subprocess.Popen[str]
) -> float | None:
    """Seconds from ``since`` (monotonic) until ``done()``, polled every 0.1 s; None when
    ``bound`` passes first, or the edge exits."""
    while time.monotonic() - since <= bound and edge.poll() is None:
        if done():
            return round(time.monotonic() - since, 2)
        time.sleep(0.1)
    return None


def _delivery(
    logs: dict[str, list[tuple[int, int]]],
    statuses: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    *,
    returncode: int | None,
    acked_at_kill: int,
    held_at_kill: set[int],
    edge_id: str,
) -> dict[str, Any]:
    """The verdict over both logs: each batch sent in one or the other, each the owner
    acknowledged before the kill (``acked_at_kill``) in its log right after it
    (``held_at_kill``); per gateway, none applied twice; those at both counted apart."""
    seqs = {name: {seq for seq, _ in batches} for name, batches in logs.items()}
    stored = set().union(*seqs.values())
    sent = int(summary.get("batches_sent", 0))
    acked_by_owner = set(range(1, acked_at_kill + 1))
    duplicates = max(0, len(stored) - sent)
    for name, batches in logs.items():
        edges = statuses[name]["edges"]
        record: dict[str, Any] = next((r for r in edges if r.get("peer_id") == edge_id), {})
        duplicates += max(0, int(record.get("batches", 0)) - len(seqs[name]))
        duplicates += max(0, int(record.get("observations", 0)) - sum(n for _, n in batches))
    checks = edge_checks(summary, returncode, stored)
    return {
        "acked_lost": len((acked_by_owner - held_at_kill) | (set(range(1, sent + 1)) - stored)),
        "duplicates_applied": duplicates,
        "batches_sent": sent,
        "batches_stored": len(stored),
        "stored_at_both": len(seqs[OWNER] & seqs[SURVIVOR]),
        "batches_stored_per_gateway": {name: len(seqs[name]) for name in logs},
        "failed_checks": sorted(name for name, ok in checks.items() if not ok),
    }


def gateway_failover(work: Path) -> dict[str, Any]:
    """gw-a, the edge's owner, is killed with SIGKILL under load: the edge delivers to
    gw-b within FAILOVER_BOUND_S; gw-a restarted, the edge is back within
    FAILBACK_BOUND_S; every batch stored once per gateway, none lost."""
    edge_id = _edge_owned_by_owner()
    pair = _enroll(work, edge_id)
    gateways: dict[str, GatewayProcess] = {}
    edge: subprocess.Popen[str] | None = None
    try:
        for name in (OWNER, SURVIVOR):
            gateways[name] = pair.start(name)
        wait_until(lambda: all(_ring_size(g) == 2 for g in gateways.values()),
                   RING_TIMEOUT_S, "both gateways' rings hold both")  # fmt: skip
        edge = _start_edge(edge_id, work, pair.ports[SURVIVOR])
        lines = ProgressLines(edge)
        start = lines.steady(2.0)
        acked_at_kill = max(line["batches_acked"] for line in lines.seen)
        owner, survivor = gateways[OWNER], gateways[SURVIVOR]
        killed_at = time.monotonic()
        kill9(owner.process)
        stop(owner.process)
        held_at_kill = {seq for seq, _ in logged_batches(owner.data_dir, edge_id)}
        failover_s = _seconds_until(lambda: bool(logged_batches(survivor.data_dir, edge_id)),
                                    killed_at, FAILOVER_BOUND_S, edge)  # fmt: skip
        lines.for_seconds(2.0)  # the edge streams to the survivor
        restart_at = time.monotonic()
        gateways[OWNER] = owner = pair.start(OWNER)
        high = max(held_at_kill, default=0)
        failback_s = _seconds_until(
            lambda: any(seq > high for seq, _ in logged_batches(owner.data_dir, edge_id)),
            restart_at, FAILBACK_BOUND_S, edge,
        )  # fmt: skip
        back_at = time.monotonic()
        lines.for_seconds(2.0)  # the edge streams to its owner again
        stopped_at = time.monotonic()
        edge.send_signal(signal.SIGTERM)  # it drains: everything spooled must be acknowledged
        rest = lines.rest(90.0)
        returncode = edge.wait(30)
        statuses = {name: gateway.status() for name, gateway in gateways.items()}
        for gateway in gateways.values():
            stop(gateway.process)
        logs = {name: logged_batches(g.data_dir, edge_id) for name, g in gateways.items()}
        summary = rest[-1]
        figures = _delivery(
            logs, statuses, summary, returncode=returncode, edge_id=edge_id,
            acked_at_kill=acked_at_kill, held_at_kill=held_at_kill,
        )  # fmt: skip
        figures.update(
            throughput_before=rate(rest, start, killed_at),
            throughput_during=rate(rest, killed_at, restart_at),
            throughput_after=rate(rest, back_at, stopped_at),
            failover_s=failover_s,
            failback_s=failback_s,
            redirects=summary.get("redirects"),
            batches_acked_at_kill=acked_at_kill,
        )
        return finish(
            "gateway_failover", figures,
            failed_over=failover_s is not None, failed_back=failback_s is not None,
        )  # fmt: skip
    finally:
        if edge is not None:
            stop(edge)
        for gateway in gateways.values():
            stop(gateway.process)
