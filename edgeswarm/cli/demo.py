"""``edgeswarm demo``: a gateway, an inference node and edge processes on loopback.

The demo is an orchestrator only: it starts real processes (``edgeswarm
gateway``, ``edgeswarm infer`` and ``edgeswarm edge``), reads the JSON lines
they print, asks the gateway for its status over the admin protocol, and
renders it all. Each edge's agents: half flock (``boids``), a quarter detect
anomalies with a light LiteRT model (``anomaly``), a quarter do the same and
escalate their top suspects to the heavy ``triage`` model on the inference
node through the gateway's heavy lane (``escalate``).

With ``--io mqtt`` the observations go through a real broker: the demo starts
Mosquitto on 127.0.0.1 and, per edge, a sensor simulator
(``edgeswarm.edge.io.sensor_sim``: the flocking world publishing its readings
and applying the actions that come back over MQTT); each edge runs with
``--io mqtt://127.0.0.1:PORT/demo/EDGE?act=batch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import fetch_state, fetch_status
from edgeswarm.edge.io.mosquitto import INSTALL_HINT, Mosquitto, mosquitto_binary
from edgeswarm.errors import EdgeswarmError
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity import KeyPair, load_or_create_key
from edgeswarm.models import TRIAGE_MODEL, write_anomaly_model, write_triage_onnx
from edgeswarm.telemetry import LatencyHistogram
from edgeswarm.wire import Role

from .demo_placement import PlacementDemo

STARTUP_TIMEOUT_S = 30.0
ADMIN_ID = "demo-admin"
STOP_GRACE_S = 20.0
ANOMALY_MODEL = "anomaly.tflite"
HEAVY_MODEL = f"{TRIAGE_MODEL}.onnx"
NODE_ID = "demo-infer"


@dataclass(frozen=True, kw_only=True)
class DemoPlan:
    """What to start."""

    duration_s: float
    edges: int
    agents: int
    tick_hz: float
    data_dir: Path
    io: str = "sim"
    """``sim`` (the built-in world) or ``mqtt`` (sensors and actuators over Mosquitto)."""
    placement: bool = False
    """Swarm agents placed by the gateway (``demo_placement.py``), one edge drained half-way."""


@dataclass
class EdgeView:
    """The last line an edge printed."""

    edge_id: str
    last: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    returncode: int | None = None


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeswarm", *args]


async def _read_lines(stream: asyncio.StreamReader, view: EdgeView) -> None:
    while line := await stream.readline():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "summary":
            view.summary = record
        view.last = record


@dataclass(frozen=True)
class Credentials:
    """What the demo hands out: an admin key enrolled directly, a join token per edge."""

    admin: KeyPair
    edge_tokens: list[str]
    node_token: str


def _fresh_swarm(plan: DemoPlan) -> Credentials:
    """Remove an earlier run's state, enroll the demo's admin key, issue edge join tokens."""
    for old in [plan.data_dir / "gateway", *plan.data_dir.glob("edge-*")]:
        if old.is_dir():
            shutil.rmtree(old)
    for old_log in plan.data_dir.glob("*.log"):
        old_log.unlink()
    write_anomaly_model(plan.data_dir / ANOMALY_MODEL)
    write_triage_onnx(plan.data_dir / HEAVY_MODEL)
    admin = load_or_create_key(plan.data_dir / "admin.key")
    with PeerRegistry(plan.data_dir / "gateway" / "peers.db") as registry:
        registry.add_peer(admin.public_key, ADMIN_ID, Role.ADMIN, replace=True)
        tokens = [registry.issue_token(Role.EDGE, ttl_s=3600) for _ in range(plan.edges)]
        node_token = registry.issue_token(Role.INFERENCE, ttl_s=3600)
    return Credentials(admin, tokens, node_token)


async def _start_daemon(
    plan: DemoPlan, name: str, *args: str
) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    """Start ``edgeswarm ARGS`` logging to ``NAME.log``; wait for its JSON ready line."""
    log_path = plan.data_dir / f"{name}.log"
    log = log_path.open("ab")
    process = await asyncio.create_subprocess_exec(
        *_command(*args),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    assert process.stdout is not None
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        line = await process.stdout.readline()
    if not line:
        raise RuntimeError(f"{name} exited at start; see {log_path}")
    return process, json.loads(line)


async def _start_gateway(plan: DemoPlan) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    return await _start_daemon(
        plan,
        "gateway",
        *("gateway", "--listen", "127.0.0.1:0", "--metrics-port", "0"),
        *("--data-dir", str(plan.data_dir / "gateway")),
    )


async def _start_node(
    plan: DemoPlan, listening: dict[str, Any], token: str
) -> asyncio.subprocess.Process:
    """The inference node serving the heavy model, enrolled with the gateway."""
    process, _ = await _start_daemon(
        plan,
        NODE_ID,
        *("infer", "--model", str(plan.data_dir / HEAVY_MODEL), "--node-id", NODE_ID),
        *("--gateway", f"127.0.0.1:{listening['port']}", "--ca", str(listening["ca"])),
        *("--join-token", token, "--data-dir", str(plan.data_dir / NODE_ID)),
        *("--http", "127.0.0.1:0", "--metrics-port", "0"),
    )
    return process


def _edge_io(plan: DemoPlan, edge_id: str, broker: Mosquitto | None) -> tuple[str, ...]:
    if broker is None:
        return ()
    return (
        "--io",
        f"{broker.url}/demo/{edge_id}?act=batch",
        "--obs-max-age",
        str(max(1.0, 5.0 / plan.tick_hz) if plan.tick_hz > 0 else 1.0),
    )


async def _start_sensors(
    plan: DemoPlan, index: int, broker: Mosquitto
) -> asyncio.subprocess.Process:
    """The flocking world of one edge, behind the broker (``sensor_sim``)."""
    log = (plan.data_dir / f"sensors-{index}.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edgeswarm.edge.io.sensor_sim",
        *("--broker", f"127.0.0.1:{broker.port}", "--prefix", f"demo/edge-{index}"),
        *("--agents", str(plan.agents), "--first-id", str(index * plan.agents)),
        *("--hz", str(plan.tick_hz or 10.0), "--duration", str(plan.duration_s + 2.0)),
        *("--seed", str(index)),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    return process


def start_broker(plan: DemoPlan) -> Mosquitto | None:
    """Mosquitto for ``--io mqtt`` (None for ``sim``); OSError saying how to install it."""
    if plan.io != "mqtt":
        return None
    binary = mosquitto_binary()
    if binary is None:
        raise OSError(f"the MQTT demo needs the Mosquitto broker: {INSTALL_HINT}")
    directory = plan.data_dir / "mosquitto"
    directory.mkdir(parents=True, exist_ok=True)
    broker = Mosquitto(binary, directory)
    broker.start()
    return broker


async def _start_edge(
    plan: DemoPlan,
    index: int,
    listening: dict[str, Any],
    token: str,
    broker: Mosquitto | None = None,
) -> tuple[asyncio.subprocess.Process, EdgeView]:
    edge_id = f"edge-{index}"
    log = (plan.data_dir / f"{edge_id}.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        *_command(
            "edge",
            "--edge-id",
            edge_id,
            "--ca",
            str(listening["ca"]),
            "--gateway",
            f"127.0.0.1:{listening['port']}",
            *(
                ("--placement",)
                if plan.placement
                else ("--agents", str(plan.agents), "--first-agent-id", str(index * plan.agents))
            ),
            "--seed",
            str(index),
            "--tick-hz",
            str(plan.tick_hz),
            "--duration",
            str(plan.duration_s),
            "--metrics-port",
            "0",
            "--progress-interval",
            "0.5",
            "--data-dir",
            str(plan.data_dir / edge_id),
            "--join-token",
            token,
            # half the agents flock, half run the anomaly detector (a LiteRT model
            # called from Wasm, counting into the shared "anomalies" counter), and
            # half of those escalate their top suspects to the heavy triage model
            "--policy",
            "boids",
            "--policy",
            "boids",
            "--policy",
            "anomaly",
            "--policy",
            "escalate",
            "--model",
            str(plan.data_dir / ANOMALY_MODEL),
            *_edge_io(plan, edge_id, broker),
        ),
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    return process, EdgeView(edge_id)


def _totals(views: list[EdgeView], gateway: dict[str, Any] | None) -> dict[str, Any]:
    records = [v.summary or v.last for v in views]
    sent = sum(r.get("observations_sent", 0) for r in records)
    acked = sum(r.get("observations_acked", 0) for r in records)
    elapsed = max((r.get("elapsed_s", 0.0) for r in records), default=0.0)
    histogram = LatencyHistogram()
    for view in views:
        if view.summary is not None:
            histogram.merge(LatencyHistogram.from_sparse(view.summary.get("latency_hist", {})))
    if histogram.total:
        p50, p99 = histogram.quantile(0.5) * 1e3, histogram.quantile(0.99) * 1e3
    else:  # live view: the worst edge's figures
        p50 = max((r.get("ack_p50_ms", 0.0) for r in records), default=0.0)
        p99 = max((r.get("ack_p99_ms", 0.0) for r in records), default=0.0)
    heavy_rows = sum(r.get("heavy_rows", 0) for r in records)
    heavy_answered = {
        status: sum(r.get("heavy_results", {}).get(status, 0) for r in records)
        for status in ("OK", "TIMEOUT", "REJECTED", "FAILED")
    }
    connected = None
    if gateway is not None:
        connected = sum(1 for e in gateway["edges"] if e["connected"])
    return {
        "edges": len(views),
        "edges_connected": connected,
        "agents": sum(r.get("agents", 0) for r in records),
        "ticks": sum(r.get("tick", 0) for r in records),
        "observations_sent": sent,
        "observations_acked": acked,
        "gateway_observations": (
            sum(e["observations"] for e in gateway["edges"]) if gateway is not None else None
        ),
        "obs_per_s": round(acked / elapsed, 1) if elapsed > 0 else 0.0,
        "ack_p50_ms": round(p50, 3),
        "ack_p99_ms": round(p99, 3),
        "heavy_rows": heavy_rows,
        "heavy_per_s": round(heavy_rows / elapsed, 1) if elapsed > 0 else 0.0,
        "heavy_answered": heavy_answered,
        "heavy_p99_ms": max((r.get("heavy_p99_ms", 0.0) for r in records), default=0.0),
        "elapsed_s": elapsed,
    }


def _render(
    views: list[EdgeView],
    totals: dict[str, Any],
    started: float,
    placed: PlacementDemo | None = None,
) -> Group:
    table = Table(title="edgeswarm demo", expand=False)
    for column in ("edge", "agents", "tick", "sent", "acked", "in flight", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "edge" else "right")
    for view in views:
        r = view.summary or view.last
        table.add_row(
            view.edge_id,
            f"{r.get('agents', 0):,}",
            str(r.get("tick", 0)),
            f"{r.get('observations_sent', 0):,}",
            f"{r.get('observations_acked', 0):,}",
            str(r.get("in_flight", 0)),
            f"{r.get('ack_p50_ms', 0):.2f}",
            f"{r.get('ack_p99_ms', 0):.2f}",
        )
    line = Text(
        f"{time.monotonic() - started:5.1f} s  |  edges {totals['edges_connected'] or 0}"
        f"/{totals['edges']}  |  agents {totals['agents']:,}  |  "
        f"{totals['obs_per_s']:,.0f} obs/s  |  acked {totals['observations_acked']:,}"
        f"/{totals['observations_sent']:,}  |  ack p50 {totals['ack_p50_ms']:.2f} ms"
        f"  p99 {totals['ack_p99_ms']:.2f} ms  |  heavy lane {totals['heavy_per_s']:,.0f}/s"
        f"  p99 {totals['heavy_p99_ms']:.2f} ms"
        + "".join(
            f"  |  {key.rpartition('/')[2]} {value:,}"
            for key, value in sorted(totals.get("swarm_counters", {}).items())
        )
    )
    if placed is None:
        return Group(table, line)
    return Group(table, line, Text(placed.line()))


async def _stop(process: asyncio.subprocess.Process, grace: float) -> int:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
    return process.returncode if process.returncode is not None else -1


async def run_demo(plan: DemoPlan, *, live: bool) -> dict[str, Any]:
    """Run the demo; returns the summary."""
    plan.data_dir.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=not live)  # with --json, progress goes to stderr
    started = time.monotonic()
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)

    credentials = _fresh_swarm(plan)
    broker = start_broker(plan)
    gateway, listening = await _start_gateway(plan)
    node = await _start_node(plan, listening, credentials.node_token)
    address = GatewayAddress(
        port=int(listening["port"]), ca_file=Path(listening["ca"]), connect_timeout_s=2.0
    )
    placed = PlacementDemo(address, credentials.admin, ADMIN_ID) if plan.placement else None
    if placed is not None:
        await placed.add_agents(plan.edges * plan.agents)
    edges = [
        await _start_edge(plan, i, listening, token, broker)
        for i, token in enumerate(credentials.edge_tokens)
    ]
    sensors = (
        [await _start_sensors(plan, i, broker) for i in range(plan.edges)]
        if broker is not None
        else []
    )
    views = [view for _, view in edges]
    readers = [
        asyncio.create_task(_read_lines(process.stdout, view))
        for process, view in edges
        if process.stdout is not None
    ]
    gateway_status: dict[str, Any] | None = None
    swarm_counters: dict[str, int] = {}

    draining = (
        asyncio.create_task(placed.drain_at(started, plan.duration_s / 2)) if placed else None
    )

    async def poll_status() -> None:
        nonlocal gateway_status, swarm_counters
        if placed is not None:
            await placed.poll()
        with contextlib.suppress(EdgeswarmError, OSError):
            gateway_status = await fetch_status(
                address, key=credentials.admin, admin_id=ADMIN_ID, timeout=2.0
            )
        with contextlib.suppress(EdgeswarmError, OSError):
            _, snapshot = await fetch_state(
                address, key=credentials.admin, admin_id=ADMIN_ID, timeout=2.0
            )
            swarm_counters = dict(snapshot.get("counters", {}))

    def totals() -> dict[str, Any]:
        return {**_totals(views, gateway_status), "swarm_counters": swarm_counters}

    edges_done = asyncio.gather(*(process.wait() for process, _ in edges))
    with Live(console=console, auto_refresh=False, transient=False) as display:
        deadline = started + plan.duration_s + STOP_GRACE_S + 15.0
        while not edges_done.done() and not interrupted.is_set():
            await poll_status()
            display.update(_render(views, totals(), started, placed))
            display.refresh()
            if time.monotonic() > deadline:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await asyncio.shield(edges_done)
        codes = [await _stop(process, STOP_GRACE_S) for process, _ in edges]
        for view, code in zip(views, codes, strict=True):
            view.returncode = code
        await asyncio.gather(*readers, return_exceptions=True)
        await poll_status()
        display.update(_render(views, totals(), started, placed))
        display.refresh()
    if not console.is_terminal:
        console.line()  # Rich leaves the last line of a live view open in a file
    if draining is not None:
        draining.cancel()
        with contextlib.suppress(asyncio.CancelledError, EdgeswarmError, OSError):
            await draining
    for process in sensors:
        await _stop(process, STOP_GRACE_S)
    if broker is not None:
        broker.stop()
    await _stop(node, STOP_GRACE_S)
    await _stop(gateway, STOP_GRACE_S)
    edges_done.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await edges_done

    summary = totals()
    summary["interrupted"] = interrupted.is_set()
    summary["failed"] = [v.edge_id for v in views if v.summary is None]
    summary["logs"] = str(plan.data_dir)
    summary["io"] = plan.io
    if placed is not None:
        summary["placement"] = placed.summary()
    if live:
        console.print(
            f"[bold]{summary['observations_acked']:,}[/] of {summary['observations_sent']:,} "
            f"observations acknowledged from {summary['edges']} edges, "
            f"{summary['obs_per_s']:,.0f} obs/s, ack p99 {summary['ack_p99_ms']:.2f} ms; "
            f"heavy lane {summary['heavy_rows']:,} suspects triaged "
            f"({summary['heavy_answered']['OK']:,} answered), "
            f"p99 {summary['heavy_p99_ms']:.2f} ms. "
            f"Logs in {plan.data_dir}/."
        )
    return summary
