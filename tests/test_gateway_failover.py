"""Two gateway processes that peer with each other (``--peer``) and one edge process:
the edge asks the wrong gateway and is redirected to its owner on the gateway ring;
kill -9 the owner and the edge delivers to the other; restart the owner and the edge
is redirected back. Nothing the edge spooled is lost: it ends with everything acked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity.keys import load_or_create_key
from edgeswarm.placement.gateways import GatewayRing, RingPeer
from edgeswarm.transport.tls import ensure_certificates
from edgeswarm.wire import Role

from .conftest import RunningGateway, edgeswarm_command, free_udp_port, start_gateway, stop_process
from .operator import http_get

pytestmark = pytest.mark.integration

WAIT_S = 60.0


def edge_owned_by(gateway_id: str) -> str:
    """An edge id the ring of gw-a and gw-b gives to ``gateway_id``."""
    ring = GatewayRing("gw-a")
    ring.peer_up(RingPeer("gw-b", "127.0.0.1", 1))
    for i in range(1000):
        owner = ring.owner(f"edge-{i}")
        if (owner.gateway_id if owner else "gw-a") == gateway_id:
            return f"edge-{i}"
    raise AssertionError("no edge for that gateway")


def metric(gateway: RunningGateway, series: str) -> float:
    status, body = http_get("127.0.0.1", gateway.metrics_port, "/metrics")
    assert status == 200
    for line in body.decode().splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def edge_record(gateway: RunningGateway, edge_id: str) -> dict[str, Any]:
    """The gateway's STATUS entry of ``edge_id`` (an empty one if it never sent)."""
    status = asyncio.run(gateway.status())
    for edge in status["edges"]:
        if edge["peer_id"] == edge_id:
            return edge  # type: ignore[no-any-return]
    return {"connected": False, "batches": 0}


def wait_for(what: str, predicate: Callable[[], bool], *processes: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        for process in processes:
            assert process.poll() is None, f"{process.args!r} exited while waiting: {what}"
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.1)


def test_an_edge_is_redirected_to_its_gateway_fails_over_and_comes_back(tmp_path: Path) -> None:
    dirs = {name: tmp_path / name for name in ("gw-a", "gw-b", "edge")}
    certs = {name: ensure_certificates(dirs[name]) for name in ("gw-a", "gw-b")}
    keys = {name: load_or_create_key(dirs[name] / "identity.key") for name in ("gw-a", "gw-b")}
    ports = {name: free_udp_port() for name in ("gw-a", "gw-b")}
    edge_id = edge_owned_by("gw-a")
    edge_key = load_or_create_key(dirs["edge"] / "edge.key")
    for name, other in (("gw-a", "gw-b"), ("gw-b", "gw-a")):
        with PeerRegistry(dirs[name] / "peers.db") as registry:  # enrolled at every gateway
            registry.add_peer(keys[other].public_key, other, Role.GATEWAY)
            registry.add_peer(edge_key.public_key, edge_id, Role.EDGE)
    bundle = tmp_path / "fleet-ca.crt"  # the edge trusts both gateways' CAs
    bundle.write_text(certs["gw-a"].ca.read_text() + certs["gw-b"].ca.read_text())

    def start(name: str) -> RunningGateway:
        other = "gw-b" if name == "gw-a" else "gw-a"
        return start_gateway(
            dirs[name],
            *("--gateway-id", name, "--peer", f"127.0.0.1:{ports[other]}"),
            *("--peer-ca", str(certs[other].ca), "--peer-timeout", "1.5", "--shard-edges"),
            port=ports[name],
        )

    a, b = start("gw-a"), start("gw-b")
    edge: subprocess.Popen[str] | None = None
    try:
        ring = "edgeswarm_gateway_ring_gateways"
        wait_for("both rings hold two gateways", lambda: metric(a, ring) == metric(b, ring) == 2)
        with (tmp_path / "edge.log").open("w") as log:
            edge = subprocess.Popen(
                edgeswarm_command(
                    *("edge", "--edge-id", edge_id, "--ca", str(bundle)),
                    *("--gateway", f"127.0.0.1:{ports['gw-b']}", "--data-dir", str(dirs["edge"])),
                    *("--agents", "50", "--tick-hz", "50", "--duration", "300"),
                    *("--metrics-port", "-1", "--progress-interval", "0", "--json"),
                ),
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=dict(os.environ),
            )
        # 1. asked gw-b, which does not own it: sent to gw-a at the handshake
        wait_for(
            "gw-a takes the edge's batches", lambda: edge_record(a, edge_id)["batches"] > 20, edge
        )
        assert edge_record(b, edge_id)["batches"] == 0
        assert metric(b, 'edgeswarm_gateway_redirects_total{reason="owner"}') >= 1

        # 2. the owner dies: once gw-b stops hearing it, gw-b owns the edge
        a.process.kill()
        stop_process(a.process)  # reaped, its pipe closed
        wait_for(
            "gw-b takes over", lambda: edge_record(b, edge_id)["batches"] > 20, edge, b.process
        )
        assert metric(b, ring) == 1

        # 3. the owner returns (same data, same port): the edge is sent back to it
        batches_at_b = edge_record(b, edge_id)["batches"]
        a = start("gw-a")
        before = edge_record(a, edge_id)["batches"]  # restored from its log
        wait_for(
            "the edge is back at gw-a",
            lambda: edge_record(a, edge_id)["batches"] > before + 20,
            edge,
            b.process,
        )
        assert metric(b, 'edgeswarm_gateway_redirects_total{reason="ring"}') >= 1
        assert not edge_record(b, edge_id)["connected"]
        left_b = edge_record(b, edge_id)["batches"]
        assert left_b >= batches_at_b
        now_a = edge_record(a, edge_id)["batches"]
        wait_for("gw-a goes on", lambda: edge_record(a, edge_id)["batches"] > now_a + 20, edge)
        assert edge_record(b, edge_id)["batches"] == left_b  # nothing more went to gw-b

        edge.send_signal(signal.SIGTERM)  # drain: everything spooled must be acknowledged
        stdout, _ = edge.communicate(timeout=WAIT_S)
        summary = json.loads(stdout.strip().splitlines()[-1])
        assert edge.returncode == 0, (tmp_path / "edge.log").read_text()[-3000:]
        assert summary["in_flight"] == 0
        assert summary["observations_acked"] == summary["observations_sent"] > 0
        assert summary["redirects"] >= 2
        assert summary["gateway"] == f"127.0.0.1:{ports['gw-a']}"
    finally:
        if edge is not None:
            edge.kill()
            stop_process(edge)
        for gateway in (a, b):
            stop_process(gateway.process)
