"""``edgeswarm``: run a gateway or an edge, ask a gateway its status, run a local demo."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from edgeswarm import __version__
from edgeswarm.telemetry import configure_logging

from .address import parse_address
from .keys import keys_app
from .options import admin_logging, choice, fail, quic_stack
from .options import metrics_port as metrics_port_option
from .state import state_app

app = typer.Typer(
    name="edgeswarm",
    help="QUIC edge agent runtime with WebAssembly agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(keys_app)
app.add_typer(state_app)

DEFAULT_ADMIN_KEY = Path("var/admin.key")

LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")]
MetricsPort = Annotated[
    int, typer.Option("--metrics-port", help="Prometheus port; 0 picks a free one; -1 disables.")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print version.")
    ] = False,
) -> None:
    """QUIC edge agent runtime with WebAssembly agents."""


@app.command()
def gateway(
    listen: Annotated[str, typer.Option(help="host:port to listen on (port 0 picks one).")] = (
        "127.0.0.1:4433"
    ),
    data_dir: Annotated[Path, typer.Option(help="Directory for certificates and state.")] = Path(
        "var/gateway"
    ),
    cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM).")] = None,
    key: Annotated[Path | None, typer.Option(help="Private key of --cert (PEM).")] = None,
    gateway_id: Annotated[str, typer.Option(help="Name of this gateway.")] = "gateway-0",
    max_batch_agents: Annotated[int, typer.Option(help="Largest OBS_BATCH accepted.")] = 65536,
    credit_window: Annotated[
        int, typer.Option(min=1, help="Batches an edge may have unacknowledged.")
    ] = 256,
    fsync: Annotated[
        str, typer.Option(help="Durable log: always (power-loss safe), normal (crash safe), off.")
    ] = "normal",
    stack: Annotated[
        str | None, typer.Option(help="QUIC stack: aioquic or qh3 (default: $EDGESWARM_QUIC).")
    ] = None,
    peer: Annotated[
        list[str] | None,
        typer.Option(help="Peer gateway host:port to replicate swarm state with; repeatable."),
    ] = None,
    peer_ca: Annotated[
        Path | None,
        typer.Option(help="CA (bundle) of the peer gateways (default: this gateway's CA)."),
    ] = None,
    identity_key: Annotated[
        Path | None,
        typer.Option(
            help="Key this gateway signs with at peer gateways (default: DATA_DIR/identity.key)."
        ),
    ] = None,
    metrics_port: MetricsPort = 9464,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a gateway. Prints one JSON line with the bound address on stdout when ready.

    Peers must hold an enrolled key: see `edgeswarm keys`. A peer gateway
    (--peer) must have this gateway's key (`public_key` in the ready line)
    enrolled with `--role gateway --peer-id GATEWAY_ID`.
    """
    from edgeswarm.gateway import Gateway, GatewayConfig
    from edgeswarm.identity import public_key_text

    if (cert is None) != (key is None):
        raise typer.BadParameter("--cert and --key go together")
    configure_logging(log_level, process="gateway")
    host, port = parse_address(listen)
    config = GatewayConfig(
        host=host,
        port=port,
        data_dir=data_dir,
        cert=cert,
        key=key,
        gateway_id=gateway_id,
        max_batch_agents=max_batch_agents,
        credit_window=credit_window,
        fsync=choice(fsync, ("always", "normal", "off"), "--fsync"),
        stack=quic_stack(stack),
        metrics_port=metrics_port_option(metrics_port),
        identity_key=identity_key,
        peers=tuple(parse_address(p) for p in peer or ()),
        peer_ca=peer_ca,
    )

    async def serve() -> None:
        server = Gateway(config)
        await server.start()
        typer.echo(
            json.dumps(
                {
                    "event": "listening",
                    "host": host,
                    "port": server.port,
                    "ca": str(server.ca_file) if server.ca_file else None,
                    "metrics_port": server.metrics_port,
                    "gateway_id": config.gateway_id,
                    "public_key": public_key_text(server.identity.public_key),
                }
            )
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        await asyncio.sleep(0.05)

    asyncio.run(serve())


@app.command()
def edge(
    edge_id: Annotated[str, typer.Option(help="Stable name of this edge.")],
    ca: Annotated[Path, typer.Option(help="CA certificate of the gateway (pinned).")],
    gateway_addr: Annotated[
        str, typer.Option("--gateway", help="Gateway host:port.")
    ] = "127.0.0.1:4433",
    server_name: Annotated[
        str | None, typer.Option(help="Name in the gateway's certificate (default: host).")
    ] = None,
    agents: Annotated[int, typer.Option(min=1, help="Agents on this edge.")] = 10_000,
    first_agent_id: Annotated[int, typer.Option(min=0, help="Id of the first agent.")] = 0,
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="Wasm policy: a built-in name or a .wasm/.wat file; repeat to split the "
            "agents into equal groups, one per policy (default: boids)."
        ),
    ] = None,
    policy_fallback: Annotated[
        str, typer.Option(help="Action of a quarantined policy's agents: zero or hold.")
    ] = "zero",
    policy_fuel: Annotated[
        int,
        typer.Option(min=1, help="Fuel per agent per step (plus 100 000 per call); beyond: fault."),
    ] = 2_000,
    policy_memory_mb: Annotated[
        int, typer.Option(min=1, help="Linear memory limit of each policy instance, MiB.")
    ] = 64,
    policy_retry: Annotated[
        float | None,
        typer.Option(min=0, help="Re-enable a quarantined policy after SECONDS (default: never)."),
    ] = None,
    model: Annotated[
        list[Path] | None,
        typer.Option(help="LiteRT .tflite model for policies, id = file stem; repeatable."),
    ] = None,
    module_cache_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGESWARM_CACHE_DIR",
            help="Compiled Wasm modules kept across restarts (default: DATA_DIR/modules).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Environment seed.")] = 0,
    tick_hz: Annotated[float, typer.Option(min=0, help="Ticks/s; 0 = as fast as acked.")] = 10.0,
    batch_agents: Annotated[int, typer.Option(min=1, help="Agents per OBS_BATCH.")] = 2048,
    data_dir: Annotated[
        Path | None, typer.Option(help="Key and spool directory (default: var/edge/EDGE_ID).")
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="Private key (default: DATA_DIR/edge.key, created).")
    ] = None,
    join_token: Annotated[
        str | None, typer.Option(help="Token from `edgeswarm keys issue` to enroll the key.")
    ] = None,
    spool_max_bytes: Annotated[
        int, typer.Option(min=1024, help="Bound of the on-disk spool of unacked batches.")
    ] = 256 * 1024 * 1024,
    overflow: Annotated[
        str, typer.Option(help="When the spool is full: block or drop_oldest.")
    ] = "block",
    stack: Annotated[
        str | None, typer.Option(help="QUIC stack: aioquic or qh3 (default: $EDGESWARM_QUIC).")
    ] = None,
    drain_timeout: Annotated[float, typer.Option(help="Seconds to wait for acks at stop.")] = 10.0,
    duration: Annotated[
        float | None, typer.Option(help="Stop after SECONDS (default: on signal).")
    ] = None,
    ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks.")] = None,
    progress_interval: Annotated[
        float, typer.Option(help="Seconds between progress lines; 0 = none.")
    ] = 1.0,
    metrics_port: MetricsPort = 9465,
    log_level: LogLevel = "INFO",
) -> None:
    """Run an edge: agents step Wasm policies and stream observations to the gateway.

    Batches are spooled on disk until the gateway acknowledges them; while the
    gateway is unreachable the edge keeps stepping and reconnects with backoff.
    Progress and a final summary are JSON lines on stdout; logs are JSON on stderr.
    Exit status 1 when batches stayed unacknowledged (they stay spooled for the next
    start) or were dropped (--overflow drop_oldest).
    """
    from edgeswarm.edge.config import EdgeConfig
    from edgeswarm.edge.runner import EdgeRunner, install_stop_signals

    configure_logging(log_level, process="edge")
    host, port = parse_address(gateway_addr)
    config = EdgeConfig(
        edge_id=edge_id,
        gateway_host=host,
        gateway_port=port,
        ca_file=ca,
        server_name=server_name,
        agents=agents,
        first_agent_id=first_agent_id,
        policies=tuple(policy or ["boids"]),
        policy_fallback=choice(policy_fallback, ("zero", "hold"), "--policy-fallback"),
        policy_fuel_per_agent=policy_fuel,
        policy_memory_mb=policy_memory_mb,
        policy_retry_s=policy_retry,
        models=tuple(model or ()),
        module_cache_dir=module_cache_dir,
        seed=seed,
        tick_hz=tick_hz,
        batch_agents=batch_agents,
        data_dir=data_dir or Path("var/edge") / edge_id,
        key_file=key,
        join_token=join_token,
        spool_max_bytes=spool_max_bytes,
        overflow=choice(overflow, ("block", "drop_oldest"), "--overflow"),
        stack=quic_stack(stack),
        drain_timeout_s=drain_timeout,
        duration_s=duration,
        ticks=ticks,
        progress_interval_s=progress_interval,
        metrics_port=metrics_port_option(metrics_port),
    )

    async def run() -> dict[str, object]:
        runner = EdgeRunner(config)
        install_stop_signals(runner)
        return await runner.run()

    from edgeswarm.edge.spool import SpoolError
    from edgeswarm.identity.keys import KeyFileError
    from edgeswarm.models.errors import ModelError

    try:
        summary = asyncio.run(run())
    except (KeyFileError, SpoolError, ModelError, FileNotFoundError) as exc:
        fail(f"edge {edge_id}: {exc}")
    # acked != sent would also count the batches a restart carried over from the spool
    if summary["in_flight"] or summary["dropped_observations"]:
        raise typer.Exit(1)


@app.command()
def status(
    ca: Annotated[Path, typer.Option(help="CA certificate of the gateway (pinned).")],
    gateway_addr: Annotated[
        str, typer.Option("--gateway", help="Gateway host:port.")
    ] = "127.0.0.1:4433",
    server_name: Annotated[str | None, typer.Option(help="Name in the certificate.")] = None,
    key: Annotated[
        Path, typer.Option(help="Admin private key enrolled with role admin.")
    ] = DEFAULT_ADMIN_KEY,
    admin_id: Annotated[str, typer.Option(help="Peer id the admin key is enrolled as.")] = "admin",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 10.0,
) -> None:
    """Ask a gateway for its status: every edge, its agents and what it sent.

    Needs an admin key: `edgeswarm keys init --key var/admin.key`, then on the
    gateway `edgeswarm keys add --role admin --peer-id admin --public-key ...`.
    """
    from edgeswarm.admin import fetch_status
    from edgeswarm.identity.keys import KeyFileError, KeyPair

    admin_logging()
    host, port = parse_address(gateway_addr)
    try:
        pair = KeyPair.load(key)
    except KeyFileError as exc:
        fail(str(exc))
    try:
        result = asyncio.run(
            fetch_status(
                host,
                port,
                ca_file=ca,
                key=pair,
                peer_id=admin_id,
                server_name=server_name,
                timeout=timeout,
                stack=quic_stack(None),
            )
        )
    except (ConnectionError, OSError, TimeoutError) as exc:
        fail(f"cannot reach gateway {gateway_addr}: {exc or type(exc).__name__}")
    if as_json:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"gateway {result['gateway_id']} (up {result['uptime_s']:.0f} s)")
    for column in ("edge", "connected", "agents", "batches", "observations", "last seq", "errors"):
        table.add_column(column, justify="left" if column == "edge" else "right")
    for edge_status in result["edges"]:
        table.add_row(
            edge_status["peer_id"],
            "yes" if edge_status["connected"] else "no",
            f"{edge_status['agents']:,}",
            f"{edge_status['batches']:,}",
            f"{edge_status['observations']:,}",
            str(edge_status["last_seq"]),
            str(edge_status["errors"]),
        )
    Console().print(table)


@app.command()
def demo(
    duration: Annotated[float, typer.Option(min=0.5, help="Seconds to run.")] = 15.0,
    edges: Annotated[int, typer.Option(min=1, help="Edge processes.")] = 2,
    agents: Annotated[int, typer.Option(min=1, help="Agents per edge.")] = 10_000,
    tick_hz: Annotated[float, typer.Option(min=0, help="Ticks/s per edge; 0 = max.")] = 10.0,
    data_dir: Annotated[
        Path, typer.Option(help="Where the demo's gateway keeps its files and logs.")
    ] = Path("var/demo"),
    as_json: Annotated[bool, typer.Option("--json", help="End with a JSON summary line.")] = False,
) -> None:
    """Start a gateway and edge processes on loopback, show live progress, summarise.

    Ctrl-C stops every process cleanly and still prints the summary.
    """
    from .demo import DemoPlan, run_demo

    plan = DemoPlan(
        duration_s=duration, edges=edges, agents=agents, tick_hz=tick_hz, data_dir=data_dir
    )
    summary = asyncio.run(run_demo(plan, live=not as_json))
    if as_json:
        typer.echo(json.dumps(summary))
    if summary["observations_acked"] != summary["observations_sent"] or summary["failed"]:
        raise typer.Exit(1)


def main() -> None:
    app()
