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

``swarm`` and ``swarm_checkpointed`` run alternately ``ROUNDS`` times and report
the median of their rounds (each round's pair is printed on stderr): the two
are compared at 10 %, and single runs on a 2-core machine spread by more.

The two processes run on CPUs of their own (``--cpus``: the edge on the
first half of the CPUs this process may use, the gateway on the rest), as on
the two machines they stand for: on one machine Linux wakes a process
receiving over loopback on the sender's CPU, where it waits for the sender's
burst to end (``cli/cpus.py``; ``docs/benchmarks.md`` has both ways
measured). ``EDGESWARM_BENCH_SWARM_CPUS=0`` leaves them unpinned; with
fewer than 2 CPUs they are never pinned.

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
from edgeswarm.bench.cpus import cpu_halves, cpus_option
from edgeswarm.telemetry import LatencyHistogram
from edgeswarm.wire import ObservationBatch, encode_payload

__all__ = ["SwarmRun", "run", "run_case"]

BENCH = "swarm"
SOURCE_ENV = "EDGESWARM_BENCH_SWARM_SOURCE"
"""A directory holding another checkout's ``edgeswarm`` package to run instead."""
CPUS_ENV = "EDGESWARM_BENCH_SWARM_CPUS"
"""``0``: the edge and the gateway are not pinned to CPUs of their own."""
AGENTS = 100_000
BATCH_AGENTS = 2048
LAN_DATAGRAM = 8192
WARMUP_S = 4.0
MEASURE_S = 10.0
OBS_DIM = 8
ADMIN_ID = "bench-admin"
CHECKPOINT_INTERVAL = 10
"""``swarm_checkpointed``: placement on, state checkpoints every this many ticks."""
ROUNDS = 3
"""``swarm`` and ``swarm_checkpointed`` run alternately this many times and report their
medians: single runs here spread by ±15 % (CPU frequency, the page cache, other tenants),
more than the 10 % the pair is compared at."""


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


def cpu_split() -> tuple[list[str], list[str]]:
    """``--cpus`` options of the edge and of the gateway: the first half of the usable
    CPUs and the rest; none when there are fewer than 2 or ``CPUS_ENV`` is ``0``."""
    halves = cpu_halves(CPUS_ENV)
    if halves is None:
        return [], []
    return cpus_option(halves[0]), cpus_option(halves[1])


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
            "--log-scrub-interval", "0", *extra, *cpu_split()[1],
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
                    "--drain-timeout", "5", *extra, *cpu_split()[0],
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
    """``swarm`` and ``swarm_checkpointed`` alternately, ``ROUNDS`` times (their medians),
    then ``swarm_lan`` and ``swarm_10hz``; a line per round on stderr."""
    saturated: list[SwarmRun] = []
    checkpointed: list[SwarmRun] = []
    for number in range(1, ROUNDS + 1):
        plain = run_case(tick_hz=0)
        placed = run_case(tick_hz=0, checkpoint_interval=CHECKPOINT_INTERVAL)
        saturated += [plain] if plain else []
        checkpointed += [placed] if placed else []
        print(f"swarm: round {number}/{ROUNDS}: {_round_line(plain, placed)}", file=sys.stderr)
    lan = run_case(tick_hz=0, datagram=LAN_DATAGRAM)
    paced = run_case(tick_hz=10)
    return [
        _result("swarm", "steps_per_s", saturated, "agent_steps/s"),
        _result("swarm", "write_amplification", saturated, "disk_bytes/payload_byte", 3),
        _result("swarm_lan", "steps_per_s", [lan] if lan else [], "agent_steps/s"),
        _result("swarm_checkpointed", "steps_per_s", checkpointed, "agent_steps/s"),
        _result("swarm_10hz", "ack_p50_ms", [paced] if paced else [], "ms", 3),
        _result("swarm_10hz", "ack_p99_ms", [paced] if paced else [], "ms", 3),
    ]


def _result(
    case: str, metric: str, runs: list[SwarmRun], unit: str, digits: int = 0
) -> BenchResult:
    """The median of ``metric`` over ``runs`` (-1: none ran), rounded to ``digits``."""
    if not runs:
        return BenchResult(BENCH, case, metric, -1, unit)
    value = float(np.median([getattr(r, metric) for r in runs]))
    return BenchResult(
        BENCH, case, metric, round(value) if digits == 0 else round(value, digits), unit
    )


def _round_line(plain: SwarmRun | None, placed: SwarmRun | None) -> str:
    """One round of the alternating pair, for the operator watching the suite."""
    if plain is None or placed is None:
        return "a case did not run (its error is above)"
    ratio = placed.steps_per_s / plain.steps_per_s if plain.steps_per_s else float("nan")
    return (
        f"swarm {plain.steps_per_s:,.0f} steps/s, swarm_checkpointed"
        f" {placed.steps_per_s:,.0f} steps/s ({ratio:.2f} of swarm)"
    )


if __name__ == "__main__":  # pragma: no cover - a quick look at one case
    started = time.monotonic()
    print(run_case(tick_hz=float(sys.argv[1]) if len(sys.argv) > 1 else 0))
