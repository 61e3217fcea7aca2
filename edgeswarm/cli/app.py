"""``edgeswarm``: run a gateway or an edge, ask a gateway its status, run a local demo."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from edgeswarm import __version__
from edgeswarm.telemetry import configure_logging

from .address import parse_address

app = typer.Typer(
    name="edgeswarm",
    help="QUIC edge agent runtime with WebAssembly agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")]
MetricsPort = Annotated[
    int, typer.Option("--metrics-port", help="Prometheus port; 0 picks a free one; -1 disables.")
]


def _metrics_port(value: int) -> int | None:
    return None if value < 0 else value


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


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
    metrics_port: MetricsPort = 9464,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a gateway. Prints one JSON line with the bound address on stdout when ready."""
    from edgeswarm.gateway import Gateway, GatewayConfig

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
        metrics_port=_metrics_port(metrics_port),
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
    policy: Annotated[str, typer.Option(help="Built-in Wasm policy.")] = "boids",
    seed: Annotated[int, typer.Option(help="Environment seed.")] = 0,
    tick_hz: Annotated[float, typer.Option(min=0, help="Ticks/s; 0 = as fast as acked.")] = 10.0,
    batch_agents: Annotated[int, typer.Option(min=1, help="Agents per OBS_BATCH.")] = 2048,
    window: Annotated[int, typer.Option(min=1, help="Batches in flight.")] = 64,
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

    Progress and a final summary are JSON lines on stdout; logs are JSON on stderr.
    Exit status 1 when observations stayed unacknowledged.
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
        policy=policy,
        seed=seed,
        tick_hz=tick_hz,
        batch_agents=batch_agents,
        window=window,
        duration_s=duration,
        ticks=ticks,
        progress_interval_s=progress_interval,
        metrics_port=_metrics_port(metrics_port),
    )

    async def run() -> dict[str, object]:
        runner = EdgeRunner(config)
        install_stop_signals(runner)
        return await runner.run()

    try:
        summary = asyncio.run(run())
    except (ConnectionError, OSError, TimeoutError) as exc:
        _fail(f"edge {edge_id}: cannot reach gateway {gateway_addr}: {exc or type(exc).__name__}")
    if summary["observations_acked"] != summary["observations_sent"]:
        raise typer.Exit(1)


@app.command()
def status(
    ca: Annotated[Path, typer.Option(help="CA certificate of the gateway (pinned).")],
    gateway_addr: Annotated[
        str, typer.Option("--gateway", help="Gateway host:port.")
    ] = "127.0.0.1:4433",
    server_name: Annotated[str | None, typer.Option(help="Name in the certificate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the answer.")] = 10.0,
) -> None:
    """Ask a gateway for its status: every edge, its agents and what it sent."""
    from edgeswarm.admin import fetch_status

    host, port = parse_address(gateway_addr)
    try:
        result = asyncio.run(
            fetch_status(host, port, ca_file=ca, server_name=server_name, timeout=timeout)
        )
    except (ConnectionError, OSError, TimeoutError) as exc:
        _fail(f"cannot reach gateway {gateway_addr}: {exc or type(exc).__name__}")
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
