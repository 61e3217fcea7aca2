"""``scripts/bench preauth``: what unauthenticated attacks cost a gateway, and its edges.

For each QUIC stack, a fresh gateway process per case (loopback, ``--fsync
off``); an enrolled edge in this process (``attacks.ack_probe``) sends 100
batches a second and times every ACK while the case runs, the attack in a
process of its own (``python -m edgeswarm.bench.attacks``):

- ``idle``: no attack (the baseline of ``p99_vs_idle``);
- ``initial_flood``: 20 000 forged QUIC Initials at 2 000 a second;
- ``prehello_bomb``: one 16 MiB frame of empty msgpack arrays before HELLO;
- ``idle_tls``: 500 connections that try to finish TLS and never open a
  stream, held for up to 20 s (the hello timeout is 10 s).

Metrics per case: ``rss_growth`` (peak ``VmHWM`` of the gateway during the
case minus its ``VmRSS`` before, MiB), ``ack_p50`` and ``ack_p99`` (ms),
``p99_vs_idle`` (the case's p99 over the idle one's; the target is at most
2), and for ``idle_tls`` the connections ``established`` and
``closed_by_gateway``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from edgeswarm.bench import BenchResult
from edgeswarm.bench.attacks import ProbeResult, ack_probe, rss_kib
from edgeswarm.client.address import GatewayAddress
from edgeswarm.identity import KeyPair
from edgeswarm.transport.stacks import STACKS
from edgeswarm.wire import Role

__all__ = ["run"]

BENCH = "preauth"
PROBE_S = 8.0
"""How long the probe edge sends in each case (the attacks run inside this window)."""


class Gateway:
    """A gateway process for one case, with an enrolled probe key."""

    def __init__(self, stack: str, directory: Path) -> None:
        from edgeswarm.gateway.peers import PeerRegistry

        self.key = KeyPair.generate()
        directory.mkdir(parents=True)
        with PeerRegistry(directory / "peers.db") as registry:
            registry.add_peer(self.key.public_key, "probe", Role.EDGE)
        self._log = (directory / "gateway.log").open("w")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "edgeswarm", "gateway", "--listen", "127.0.0.1:0",
                "--data-dir", str(directory), "--metrics-port", "-1", "--fsync", "off",
                "--stack", stack, "--log-level", "WARNING", "--log-scrub-interval", "0",
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        ready = json.loads(self.process.stdout.readline())
        self.port = int(ready["port"])
        self.ca = Path(ready["ca"])
        self.address = GatewayAddress(port=self.port, ca_file=self.ca, stack=stack)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


async def _case(
    gateway: Gateway, attack: Callable[[Gateway], Awaitable[dict[str, float]]] | None
) -> tuple[ProbeResult, float, dict[str, float]]:
    """Run the probe with ``attack`` inside its window; (probe, RSS growth MiB, extra)."""
    before = rss_kib(gateway.process.pid)
    probe = asyncio.create_task(
        ack_probe(gateway.address, gateway.key, "probe", duration_s=PROBE_S)
    )
    await asyncio.sleep(0.5)  # the probe is sending before the attack starts
    extra = await attack(gateway) if attack is not None else {}
    result = await probe
    growth = (rss_kib(gateway.process.pid, "VmHWM") - before) / 1024
    return result, growth, extra


async def _attack(gateway: Gateway, name: str, *args: str) -> dict[str, float]:
    """Run attack ``name`` in its own process (``attacks.main``); what it reported."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgeswarm.bench.attacks", name, "--port", str(gateway.port),
        "--ca", str(gateway.ca), "--stack", gateway.address.stack, *args,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    report: dict[str, float] = json.loads(out.decode().strip().splitlines()[-1])
    return report


async def _flood(gateway: Gateway) -> dict[str, float]:
    return await _attack(gateway, "initial_flood", "--count", "20000", "--per-s", "2000")


async def _bomb(gateway: Gateway) -> dict[str, float]:
    return await _attack(gateway, "prehello_bomb")


async def _idle_tls(gateway: Gateway) -> dict[str, float]:
    return await _attack(gateway, "idle_tls", "--count", "500", "--hold-s", "20")


CASES: dict[str, Callable[[Gateway], Awaitable[dict[str, float]]] | None] = {
    "idle": None,
    "initial_flood": _flood,
    "prehello_bomb": _bomb,
    "idle_tls": _idle_tls,
}


def run() -> list[BenchResult]:
    """Every case on every stack (about four minutes)."""
    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="edgeswarm-bench-preauth-") as tmp:
        for stack in STACKS:
            idle_p99 = 0.0
            for name, attack in CASES.items():
                gateway = Gateway(stack, Path(tmp) / f"{stack}-{name}")
                try:
                    probe, growth, extra = asyncio.run(_case(gateway, attack))
                finally:
                    gateway.close()
                case = f"{stack}/{name}"
                p99 = probe.quantile(0.99) * 1e3
                idle_p99 = p99 if name == "idle" else idle_p99
                values: dict[str, tuple[float, str]] = {
                    "rss_growth": (growth, "MiB"),
                    "ack_p50": (probe.quantile(0.50) * 1e3, "ms"),
                    "ack_p99": (p99, "ms"),
                    "acked": (float(len(probe.latencies)), "batches"),
                    "p99_vs_idle": (p99 / idle_p99 if idle_p99 else 0.0, "x"),
                    **{key: (value, "") for key, value in extra.items()},
                }
                results += [
                    BenchResult(BENCH, case, metric, value, unit)
                    for metric, (value, unit) in values.items()
                ]
    return results
