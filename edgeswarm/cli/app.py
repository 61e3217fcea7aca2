"""``edgeswarm``: run a gateway or an edge, ask a gateway its status, run a local demo."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, get_args

import typer
from rich.console import Console
from rich.table import Table

from edgeswarm import __version__
from edgeswarm.client.admin import DEFAULT_ADMIN_ID, DEFAULT_TIMEOUT_S
from edgeswarm.edge.config import EdgeConfig
from edgeswarm.edge.policy.set import Fallback
from edgeswarm.edge.spool import OverflowPolicy
from edgeswarm.telemetry import configure_logging

from .address import DEFAULT_GATEWAY, gateway_address
from .agents import agents_app
from .gateway import gateway
from .infer import infer
from .keys import keys_app
from .log import log_app
from .options import (
    DEFAULT_ADMIN_KEY,
    LogLevel,
    MetricsPort,
    admin_logging,
    choice,
    cli_port,
    default,
    exits_on_error,
    quic_stack,
)
from .options import metrics_port as metrics_port_option
from .state import state_app

app = typer.Typer(
    name="edgeswarm",
    help="QUIC edge agent runtime with WebAssembly agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(agents_app)
app.add_typer(keys_app)
app.add_typer(log_app)
app.add_typer(state_app)
app.command()(gateway)
app.command()(infer)

FALLBACKS = get_args(Fallback)
EDGE_METRICS_PORT = cli_port(default(EdgeConfig, "metrics_port"))


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
def edge(
    edge_id: Annotated[str, typer.Option(help="Stable name of this edge.")],
    ca: Annotated[Path, typer.Option(help="CA certificate of the gateway (pinned).")],
    gateway_addr: Annotated[
        str, typer.Option("--gateway", help="Gateway host:port.")
    ] = DEFAULT_GATEWAY,
    server_name: Annotated[
        str | None, typer.Option(help="Name in the gateway's certificate (default: host).")
    ] = None,
    agents: Annotated[int, typer.Option(min=1, help="Agents on this edge.")] = default(
        EdgeConfig, "agents"
    ),
    first_agent_id: Annotated[int, typer.Option(min=0, help="Id of the first agent.")] = default(
        EdgeConfig, "first_agent_id"
    ),
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="Wasm policy: a built-in name or a .wasm/.wat file; repeat to split the "
            "agents into equal groups, one per policy (default: boids)."
        ),
    ] = None,
    policy_fallback: Annotated[
        str, typer.Option(help="Action of a quarantined policy's agents: zero or hold.")
    ] = default(EdgeConfig, "policy_fallback"),
    policy_fuel: Annotated[
        int,
        typer.Option(
            min=1, help="Fuel per agent per step (plus 2 000 000 per call); beyond: fault."
        ),
    ] = default(EdgeConfig, "policy_fuel_per_agent"),
    policy_host_calls: Annotated[
        int,
        typer.Option(min=0, help="Host calls per agent per step (plus 64); beyond: fault."),
    ] = default(EdgeConfig, "policy_host_calls_per_agent"),
    policy_memory_mb: Annotated[
        int, typer.Option(min=1, help="Linear memory limit of each policy instance, MiB.")
    ] = default(EdgeConfig, "policy_memory_mb"),
    policy_deadline_ms: Annotated[
        float | None,
        typer.Option(
            min=0.001,
            help="Wall-clock limit of one policy step, ms; beyond: fault (default: half the "
            "tick period shared by the policies).",
        ),
    ] = default(EdgeConfig, "policy_deadline_ms"),
    module_max_mb: Annotated[
        float, typer.Option(min=0.001, help="Largest policy module accepted, MiB.")
    ] = default(EdgeConfig, "module_max_mb"),
    module_max_functions: Annotated[
        int, typer.Option(min=1, help="Most functions a policy module may define.")
    ] = default(EdgeConfig, "module_max_functions"),
    compile_memory_mb: Annotated[
        int, typer.Option(min=16, help="Memory limit of the process compiling a module, MiB.")
    ] = default(EdgeConfig, "compile_memory_mb"),
    compile_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds compiling one module may take.")
    ] = default(EdgeConfig, "compile_timeout_s"),
    policy_retry: Annotated[
        float | None,
        typer.Option(min=0, help="Re-enable a quarantined policy after SECONDS (default: never)."),
    ] = None,
    model: Annotated[
        list[Path] | None,
        typer.Option(help="LiteRT .tflite model for policies, id = file stem; repeatable."),
    ] = None,
    heavy_deadline_ms: Annotated[
        int,
        typer.Option(
            min=1, max=600_000, help="How long the gateway has to answer a heavy_request, ms."
        ),
    ] = default(EdgeConfig, "heavy_deadline_ms"),
    module_cache_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="EDGESWARM_CACHE_DIR",
            help="Compiled Wasm modules kept across restarts (default: DATA_DIR/modules).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Environment seed.")] = default(EdgeConfig, "seed"),
    tick_hz: Annotated[float, typer.Option(min=0, help="Ticks/s; 0 = as fast as acked.")] = default(
        EdgeConfig, "tick_hz"
    ),
    batch_agents: Annotated[int, typer.Option(min=1, help="Agents per OBS_BATCH.")] = default(
        EdgeConfig, "batch_agents"
    ),
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
    ] = default(EdgeConfig, "spool_max_bytes"),
    overflow: Annotated[
        str, typer.Option(help="When the spool is full: block or drop_oldest.")
    ] = default(EdgeConfig, "overflow"),
    stack: Annotated[
        str | None, typer.Option(help="QUIC stack: aioquic or qh3 (default: $EDGESWARM_QUIC).")
    ] = None,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for acks at stop.")
    ] = default(EdgeConfig, "drain_timeout_s"),
    duration: Annotated[
        float | None, typer.Option(help="Stop after SECONDS (default: on signal).")
    ] = None,
    ticks: Annotated[int | None, typer.Option(help="Stop after this many ticks.")] = None,
    progress_interval: Annotated[
        float, typer.Option(help="Seconds between progress lines; 0 = none.")
    ] = default(EdgeConfig, "progress_interval_s"),
    metrics_port: MetricsPort = EDGE_METRICS_PORT,
    log_level: LogLevel = "INFO",
) -> None:
    """Run an edge: agents step Wasm policies and stream observations to the gateway.

    Batches are spooled on disk until the gateway acknowledges them; while the
    gateway is unreachable the edge keeps stepping and reconnects with backoff.
    Progress and a final summary are JSON lines on stdout; logs are JSON on stderr.
    Exit status 1 when batches stayed unacknowledged (they stay spooled for the next
    start), were dropped (--overflow drop_oldest) or were quarantined.
    """
    from edgeswarm.edge.runner import EdgeRunner, install_stop_signals

    configure_logging(log_level, process="edge")
    config = EdgeConfig(
        edge_id=edge_id,
        gateway=gateway_address(
            gateway_addr, ca=ca, server_name=server_name, stack=quic_stack(stack)
        ),
        agents=agents,
        first_agent_id=first_agent_id,
        policies=tuple(policy or default(EdgeConfig, "policies")),
        policy_fallback=choice(policy_fallback, FALLBACKS, "--policy-fallback"),
        policy_fuel_per_agent=policy_fuel,
        policy_host_calls_per_agent=policy_host_calls,
        policy_memory_mb=policy_memory_mb,
        policy_deadline_ms=policy_deadline_ms,
        module_max_mb=module_max_mb,
        module_max_functions=module_max_functions,
        compile_memory_mb=compile_memory_mb,
        compile_timeout_s=compile_timeout,
        policy_retry_s=policy_retry,
        models=tuple(model or ()),
        heavy_deadline_ms=heavy_deadline_ms,
        module_cache_dir=module_cache_dir,
        seed=seed,
        tick_hz=tick_hz,
        batch_agents=batch_agents,
        data_dir=data_dir or Path("var/edge") / edge_id,
        key_file=key,
        join_token=join_token,
        spool_max_bytes=spool_max_bytes,
        overflow=choice(overflow, tuple(OverflowPolicy), "--overflow"),
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

    with exits_on_error(f"edge {edge_id}"):
        summary = asyncio.run(run())
    # acked != sent would also count the batches a restart carried over from the spool
    left = ("in_flight", "dropped_batches", "quarantined_batches")
    if any(summary[name] for name in left):  # not all acknowledged: still spooled, or lost
        raise typer.Exit(1)


@app.command()
def status(
    ca: Annotated[Path, typer.Option(help="CA certificate of the gateway (pinned).")],
    gateway_addr: Annotated[
        str, typer.Option("--gateway", help="Gateway host:port.")
    ] = DEFAULT_GATEWAY,
    server_name: Annotated[str | None, typer.Option(help="Name in the certificate.")] = None,
    key: Annotated[
        Path, typer.Option(help="Admin private key enrolled with role admin.")
    ] = DEFAULT_ADMIN_KEY,
    admin_id: Annotated[
        str, typer.Option(help="Peer id the admin key is enrolled as.")
    ] = DEFAULT_ADMIN_ID,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the answer.")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Ask a gateway for its status: every edge, its agents and what it sent.

    Needs an admin key: `edgeswarm keys init --key var/admin.key`, then on the
    gateway `edgeswarm keys add --role admin --peer-id admin --public-key ...`.
    """
    from edgeswarm.client.admin import fetch_status
    from edgeswarm.identity.keys import KeyPair

    admin_logging()
    address = gateway_address(
        gateway_addr, ca=ca, server_name=server_name, stack=quic_stack(None), timeout=timeout
    )
    with exits_on_error():
        pair = KeyPair.load(key)
    with exits_on_error(f"cannot reach gateway {gateway_addr}"):
        result = asyncio.run(fetch_status(address, key=pair, admin_id=admin_id, timeout=timeout))
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
