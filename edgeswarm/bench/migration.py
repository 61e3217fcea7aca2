"""``scripts/bench sharding``, case ``migration``: agents moved between two real edges.

A gateway process and two edge processes (``--placement``, ``--tick-hz 0``,
checkpoints every 10 ticks) on 127.0.0.1 share ``AGENTS`` swarm agents. Once
both hold their halves, ``edges drain`` moves one edge's agents to the other:
each gives its rows back at its next tick boundary (CHECKPOINT), the gateway
stores them and sends them on (ASSIGN) to the new owner. ``agents_per_s``:
agents moved (the drain's ``moves``) over the time from the drain request to
the moment ``shards`` says the other edge holds every agent and nothing is
moving (polled every ``POLL_S`` on one admin session: the figure is a lower
bound by up to that much).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgeswarm.bench import BenchResult

from .swarm import ADMIN_ID, _environment, _start_gateway, add_swarm_agents

__all__ = ["run_migration"]

AGENTS = 100_000
POLL_S = 0.02
SETTLE_TIMEOUT_S = 120.0


def _edge(root: Path, name: str, port: int, ca: Path) -> subprocess.Popen[str]:
    log = (root / f"{name}.log").open("w")
    return subprocess.Popen(
        [
            sys.executable, "-m", "edgeswarm", "edge", "--edge-id", name, "--ca", str(ca),
            "--gateway", f"127.0.0.1:{port}", "--placement", "--checkpoint-interval", "10",
            "--tick-hz", "0", "--data-dir", str(root / name), "--key", str(root / f"{name}.key"),
            "--metrics-port", "-1", "--log-level", "WARNING", "--progress-interval", "0",
            "--drain-timeout", "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        text=True,
        env=_environment(),
        cwd=root,
    )  # fmt: skip


async def _drain_and_time(port: int, ca: Path, admin: Any) -> tuple[int, float]:
    from edgeswarm.client.address import GatewayAddress
    from edgeswarm.client.admin import admin_session
    from edgeswarm.transport.quic import default_stack
    from edgeswarm.wire import FEATURE_PLACEMENT

    address = GatewayAddress(port=port, ca_file=ca, stack=default_stack())
    async with admin_session(
        address, key=admin, admin_id=ADMIN_ID, features=(FEATURE_PLACEMENT,)
    ) as client:

        async def held() -> tuple[dict[str, int], int]:
            reply = await client.request_placement("shards", {}, 30)
            result = reply.result
            return {e["edge_id"]: e["agents"] for e in result["held"]}, result["moving"]

        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:  # both edges hold their halves, nothing moving
            holders, moving = await held()
            settled = len(holders) == 2 and sum(holders.values()) == AGENTS and not moving
            if settled and min(holders.values()) > 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the edges never settled: {holders}, {moving} moving")
            await asyncio.sleep(0.2)
        started = time.perf_counter()
        reply = await client.request_placement("edges.drain", {"edge_id": "edge-a"}, 30)
        moved = int(reply.result["moves"])
        while True:
            holders, moving = await held()
            if holders.get("edge-b") == AGENTS and not moving:
                return moved, time.perf_counter() - started
            if time.monotonic() > deadline + SETTLE_TIMEOUT_S:
                raise RuntimeError(f"the drain never finished: {holders}, {moving} moving")
            await asyncio.sleep(POLL_S)


def run_migration() -> list[BenchResult]:
    from edgeswarm.identity import KeyPair, load_or_create_key

    with tempfile.TemporaryDirectory(prefix="edgeswarm-migration-") as tmp:
        root = Path(tmp)
        keys = {name: load_or_create_key(root / f"{name}.key") for name in ("edge-a", "edge-b")}
        admin = KeyPair.generate()
        gateway, port, ca = _start_gateway(
            root / "gateway",
            KeyPair.generate().public_key,
            None,
            more_peers=(
                (admin.public_key, ADMIN_ID, "admin"),
                *((key.public_key, name, "edge") for name, key in keys.items()),
            ),
        )
        edges: list[subprocess.Popen[str]] = []
        try:
            add_swarm_agents(port, ca, admin, AGENTS)
            edges = [_edge(root, name, port, ca) for name in keys]
            moved, seconds = asyncio.run(_drain_and_time(port, ca, admin))
        finally:
            for process in edges:
                process.terminate()
            for process in edges:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
            gateway.terminate()
            gateway.wait(30)
            if gateway.stdout is not None:
                gateway.stdout.close()
    return [BenchResult("sharding", "migration", "agents_per_s", moved / seconds, "agents/s")]
