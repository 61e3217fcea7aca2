"""``scripts/bench swarm``: one edge process and one gateway, end to end, at line rate.

Each case starts a fresh gateway process (default ``GatewayConfig``:
``--fsync normal``) and one edge process (``edgeswarm edge``, 100 000 agents
of the built-in ``boids`` policy, its data directory on the same disk as the
system's temporary directory) on 127.0.0.1, lets it warm up, and measures a
window from the edge's own progress lines:

- ``swarm``: ``--tick-hz 0`` (ticks as fast as acknowledged), 1 350-byte
  datagrams (the default). ``steps_per_s``: agent-steps whose observations
  the gateway acknowledged durable, per second (``observations_acked`` over
  the window). ``write_amplification``: bytes the edge process wrote to disk
  over the window (``write_bytes`` of ``/proc/<pid>/io``: counted when a page
  is dirtied, so page-cache writes count) divided by the payload bytes it
  spooled (the encoded OBS_BATCH bytes of the observations sent in the
  window);
- ``swarm_lan``: the same with large datagrams (``--max-datagram-size
  8192`` on both processes);
- ``swarm_checkpointed``: ``swarm`` with placement on: the 100 000 agents are
  swarm agents the gateway assigns (``--placement``), their state rows
  checkpointed every 10 ticks (``--checkpoint-interval 10``); ``steps_per_s``
  as ``swarm`` (the target: at least 0.9 of it);
- ``swarm_10hz``: ``--tick-hz 10``; ``ack_p50_ms``, ``ack_p99_ms``: the
  edge's batch send -> ACK times (its latency histogram over the run).

``EDGESWARM_BENCH_SWARM_SOURCE=DIR`` runs the edge and the gateway from the
``edgeswarm`` package in ``DIR`` (another checkout: the "before" of a
change, measured by this harness). A case that the other checkout cannot
run (an option it lacks) is reported with value -1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeswarm.bench import BenchResult
from edgeswarm.telemetry import LatencyHistogram
from edgeswarm.wire import ObservationBatch, encode_payload

__all__ = ["SwarmRun", "run", "run_case"]

BENCH = "swarm"
SOURCE_ENV = "EDGESWARM_BENCH_SWARM_SOURCE"
"""A directory holding another checkout's ``edgeswarm`` package to run instead."""
AGENTS = 100_000
BATCH_AGENTS = 2048
LAN_DATAGRAM = 8192
WARMUP_S = 4.0
MEASURE_S = 10.0
OBS_DIM = 8
ADMIN_ID = "bench-admin"
CHECKPOINT_INTERVAL = 10
"""``swarm_checkpointed``: placement on, state checkpoints every this many ticks."""


@dataclass
class SwarmRun:
    """What one case measured."""

    steps_per_s: float
    write_amplification: float
    ack_p50_ms: float
    ack_p99_ms: float
    window_s: float
    progress: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def _environment() -> dict[str, str]:
    """The processes' environment: ``PYTHONPATH`` names the package to run (they start in a
    temporary directory, so the current one never shadows it)."""
    env = dict(os.environ)
    source = os.environ.get(SOURCE_ENV)
    env["PYTHONPATH"] = source or str(Path(__file__).resolve().parents[2])
    return env


def tick_payload_bytes(agents: int = AGENTS, batch_agents: int = BATCH_AGENTS) -> int:
    """Encoded OBS_BATCH bytes of one tick of ``agents`` (what an edge spools per tick)."""
    total = 0
    for start in range(0, agents, batch_agents):
        n = min(batch_agents, agents - start)
        batch = ObservationBatch(
            seq=1 << 40,
            tick=1 << 30,
            agent_ids=np.arange(start, start + n, dtype=np.uint32),
            observations=np.zeros((n, OBS_DIM), dtype=np.float32),
            rewards=np.zeros(n, dtype=np.float32),
        )
        total += len(encode_payload(batch))
    return total


def _write_bytes(pid: int) -> int:
    """Bytes process ``pid`` caused to be written to storage (``/proc/<pid>/io``)."""
    try:
        with open(f"/proc/{pid}/io") as io:
            for line in io:
                if line.startswith("write_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def _start_gateway(
    directory: Path,
    key_public: bytes,
    datagram: int | None,
    *,
    more_peers: tuple[tuple[bytes, str, str], ...] = (),
) -> tuple[Any, int, Path]:
    """A gateway process; ``key_public`` enrolled as ``bench-edge``, ``more_peers`` as
    (key, id, role) each."""
    from edgeswarm.gateway.peers import PeerRegistry
    from edgeswarm.wire import Role

    directory.mkdir(parents=True)
    with PeerRegistry(directory / "peers.db") as registry:
        registry.add_peer(key_public, "bench-edge", Role.EDGE)
        for public, peer_id, role in more_peers:
            registry.add_peer(public, peer_id, Role(role))
    extra = ["--max-datagram-size", str(datagram)] if datagram else []
    log = (directory / "gateway.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "edgeswarm", "gateway", "--listen", "127.0.0.1:0",
            "--data-dir", str(directory), "--metrics-port", "-1", "--log-level", "WARNING",
            "--log-scrub-interval", "0", *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=_environment(),
        cwd=directory,
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        log.close()
        raise RuntimeError(f"gateway did not start: {(directory / 'gateway.log').read_text()}")
    ready = json.loads(line)
    return process, int(ready["port"]), Path(ready["ca"])


def run_case(
    *,
    tick_hz: float,
    datagram: int | None = None,
    warmup_s: float = WARMUP_S,
    measure_s: float = MEASURE_S,
    agents: int = AGENTS,
    checkpoint_interval: int | None = None,
) -> SwarmRun | None:
    """One gateway and one edge process; None when the edge refused to start.
    ``checkpoint_interval``: placement on (the gateway assigns the ``agents``, added
    as swarm agents) with checkpoints every that many ticks."""
    from edgeswarm.identity import KeyPair, load_or_create_key

    with tempfile.TemporaryDirectory(prefix="edgeswarm-swarm-") as tmp:
        root = Path(tmp)
        edge_dir = root / "edge"
        edge_dir.mkdir()
        key = load_or_create_key(edge_dir / "edge.key")
        admin = KeyPair.generate()
        try:
            gateway, port, ca = _start_gateway(
                root / "gateway",
                key.public_key,
                datagram,
                more_peers=((admin.public_key, ADMIN_ID, "admin"),),
            )
        except RuntimeError as exc:  # e.g. the other checkout lacks an option
            print(f"swarm: {str(exc).splitlines()[0]}", file=sys.stderr)
            return None
        extra = ["--max-datagram-size", str(datagram)] if datagram else []
        agents_args = ["--agents", str(agents)]
        if checkpoint_interval is not None:
            try:
                add_swarm_agents(port, ca, admin, agents)
            except Exception as exc:  # the other checkout has no placement
                print(f"swarm: cannot add swarm agents: {exc}", file=sys.stderr)
                gateway.terminate()
                gateway.wait(30)
                return None
            agents_args = ["--placement", "--checkpoint-interval", str(checkpoint_interval)]
        try:
            edge_log = (root / "edge.log").open("w")
            edge = subprocess.Popen(
                [
                    sys.executable, "-m", "edgeswarm", "edge", "--edge-id", "bench-edge",
                    "--ca", str(ca), "--gateway", f"127.0.0.1:{port}",
                    *agents_args, "--tick-hz", str(tick_hz),
                    "--batch-agents", str(BATCH_AGENTS), "--data-dir", str(edge_dir),
                    "--metrics-port", "-1", "--log-level", "WARNING",
                    "--progress-interval", "0.5", "--duration", str(warmup_s + measure_s),
                    "--drain-timeout", "5", *extra,
                ],
                stdout=subprocess.PIPE,
                stderr=edge_log,
                text=True,
                env=_environment(),
                cwd=root,
            )  # fmt: skip
            assert edge.stdout is not None
            lines: list[tuple[dict[str, Any], int]] = []
            summary: dict[str, Any] = {}
            killer = threading.Timer(warmup_s + measure_s + 120, edge.kill)
            killer.start()
            try:
                for raw in edge.stdout:
                    record = json.loads(raw)
                    written = _write_bytes(edge.pid)
                    if record.get("event") == "progress":
                        lines.append((record, written))
                    elif record.get("event") == "summary":
                        summary = record
                edge.wait(30)
            finally:
                killer.cancel()
                edge_log.close()
            if edge.returncode == 2 and not lines:
                return None
        finally:
            gateway.terminate()
            gateway.wait(30)
            if gateway.stdout is not None:
                gateway.stdout.close()
        return _measure(lines, summary, warmup_s, agents)


def add_swarm_agents(port: int, ca: Path, admin: Any, count: int, first_id: int = 0) -> None:
    """``agents add`` through a placement request, as ``ADMIN_ID`` with key ``admin``."""
    import asyncio

    from edgeswarm.client.address import GatewayAddress
    from edgeswarm.client.admin import placement_request
    from edgeswarm.transport.quic import default_stack

    address = GatewayAddress(port=port, ca_file=ca, stack=default_stack())
    for start in range(first_id, first_id + count, 100_000):
        args = {"first_id": start, "count": min(100_000, first_id + count - start)}
        reply = asyncio.run(
            placement_request(
                address, "agents.add", {**args, "policy": "boids"}, key=admin, admin_id=ADMIN_ID
            )
        )
        if not reply.ok:
            raise RuntimeError(reply.message)


def _measure(
    lines: list[tuple[dict[str, Any], int]],
    summary: dict[str, Any],
    warmup_s: float,
    agents: int,
) -> SwarmRun:
    window = [(r, w) for r, w in lines if r["elapsed_s"] >= warmup_s]
    if len(window) < 2:
        window = lines[-2:]
    (first, w0), (last, w1) = window[0], window[-1]
    elapsed = last["elapsed_s"] - first["elapsed_s"]
    acked = last["observations_acked"] - first["observations_acked"]
    sent = last["observations_sent"] - first["observations_sent"]
    payload = sent / agents * tick_payload_bytes(agents)
    histogram = LatencyHistogram.from_sparse(summary.get("latency_hist", {}))
    return SwarmRun(
        steps_per_s=acked / elapsed if elapsed > 0 else 0.0,
        write_amplification=(w1 - w0) / payload if payload and w0 >= 0 else -1.0,
        ack_p50_ms=histogram.quantile(0.50) * 1e3,
        ack_p99_ms=histogram.quantile(0.99) * 1e3,
        window_s=elapsed,
        progress=[r for r, _ in lines],
        summary=summary,
    )


def run() -> list[BenchResult]:
    """The four cases, one after the other."""
    results: list[BenchResult] = []
    saturated = run_case(tick_hz=0)
    if saturated is None:
        results += [BenchResult(BENCH, "swarm", "steps_per_s", -1, "agent_steps/s")]
    else:
        results += [
            BenchResult(
                BENCH, "swarm", "steps_per_s", round(saturated.steps_per_s), "agent_steps/s"
            ),
            BenchResult(
                BENCH,
                "swarm",
                "write_amplification",
                round(saturated.write_amplification, 3),
                "disk_bytes/payload_byte",
            ),
        ]
    lan = run_case(tick_hz=0, datagram=LAN_DATAGRAM)
    results.append(
        BenchResult(
            BENCH,
            "swarm_lan",
            "steps_per_s",
            round(lan.steps_per_s) if lan else -1,
            "agent_steps/s",
        )
    )
    checkpointed = run_case(tick_hz=0, checkpoint_interval=CHECKPOINT_INTERVAL)
    results.append(
        BenchResult(
            BENCH,
            "swarm_checkpointed",
            "steps_per_s",
            round(checkpointed.steps_per_s) if checkpointed else -1,
            "agent_steps/s",
        )
    )
    paced = run_case(tick_hz=10)
    for metric, value in (
        ("ack_p50_ms", paced.ack_p50_ms if paced else -1),
        ("ack_p99_ms", paced.ack_p99_ms if paced else -1),
    ):
        results.append(BenchResult(BENCH, "swarm_10hz", metric, round(value, 3), "ms"))
    return results


if __name__ == "__main__":  # pragma: no cover - a quick look at one case
    started = time.monotonic()
    print(run_case(tick_hz=float(sys.argv[1]) if len(sys.argv) > 1 else 0))
