"""``edgeswarm edge``: run an edge (agents stepping Wasm policies, delivery to a gateway)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer

from edgeswarm.edge.config import EdgeConfig
from edgeswarm.edge.policy.set import Fallback
from edgeswarm.edge.spool import OverflowPolicy
from edgeswarm.heap import freeze_startup_objects
from edgeswarm.storage import FsyncPolicy
from edgeswarm.telemetry import configure_logging

from .address import DEFAULT_GATEWAY, gateway_address
from .cpus import Cpus, pin_to_cpus
from .exits import ExitCode, Usage, exits_on_error
from .options import (
    LogLevel,
    MetricsHost,
    MetricsPort,
    Stack,
    cli_port,
    default,
    quic_stack,
    with_examples,
)
from .options import metrics_port as metrics_port_option

EDGE_METRICS_PORT = cli_port(default(EdgeConfig, "metrics_port"))
_FALLBACK: Fallback = default(EdgeConfig, "policy_fallback")
_OVERFLOW = OverflowPolicy(default(EdgeConfig, "overflow"))
_SPOOL_FSYNC = FsyncPolicy(default(EdgeConfig, "spool_fsync"))
_METRICS_HOST: str = default(EdgeConfig, "metrics_host")
JOIN_TOKEN_ENV = "EDGESWARM_JOIN_TOKEN"
"""Environment variable holding a join token (``--join-token``), shared by ``infer``."""

JoinToken = Annotated[
    str | None,
    typer.Option(
        envvar=JOIN_TOKEN_ENV,
        help="Token from `edgeswarm keys issue` to enroll the key on first contact; prefer"
        " the environment variable or --join-token-file (argv is visible in ps).",
    ),
]
JoinTokenFile = Annotated[
    Path | None,
    typer.Option(help="File holding the join token (e.g. a mounted Kubernetes secret)."),
]


def join_token_from(token: str | None, token_file: Path | None) -> str | None:
    """The join token of ``--join-token`` (or its variable) or ``--join-token-file``."""
    if token is not None and token_file is not None:
        raise Usage("give --join-token or --join-token-file, not both")
    if token_file is None:
        return token
    try:
        text = token_file.read_text().strip()
    except OSError as exc:
        raise Usage(f"--join-token-file: cannot read {token_file}: {exc.strerror}") from None
    if not text:
        raise Usage(f"--join-token-file: {token_file} is empty")
    return text


def existing_file(path: Path, option: str) -> Path:
    """``path`` if it is a file, else a usage error naming ``option``."""
    if not path.is_file():
        raise Usage(f"{option}: no file {path}")
    return path


_DEFAULT_GATEWAYS = [DEFAULT_GATEWAY]
"""``--gateway`` unless given (click copies it; never changed)."""


@with_examples
def edge(
    edge_id: Annotated[str, typer.Option(help="Stable name of this edge.")],
    ca: Annotated[Path, typer.Option(help="CA certificate of the gateway (pinned).")],
    gateway_addr: Annotated[
        list[str],
        typer.Option(
            "--gateway",
            help="Gateway host:port; repeat it for several: the next is tried when one"
            " fails, and a gateway may REDIRECT the edge to the one that owns it (enroll"
            " the edge's key at each).",
        ),
    ] = _DEFAULT_GATEWAYS,
    server_name: Annotated[
        str | None, typer.Option(help="Name in the gateway's certificate (default: host).")
    ] = None,
    agents: Annotated[int, typer.Option(min=1, help="Agents on this edge.")] = default(
        EdgeConfig, "agents"
    ),
    first_agent_id: Annotated[int, typer.Option(min=0, help="Id of the first agent.")] = default(
        EdgeConfig, "first_agent_id"
    ),
    placement: Annotated[
        bool,
        typer.Option(
            "--placement",
            help="Run the agents the gateway assigns (`edgeswarm agents add`) instead of "
            "--agents from --first-agent-id; needs --io sim.",
        ),
    ] = False,
    checkpoint_interval: Annotated[
        int,
        typer.Option(min=0, help="With --placement: send agents' state every N ticks (0: never)."),
    ] = default(EdgeConfig, "checkpoint_interval"),
    policy: Annotated[
        list[str] | None,
        typer.Option(
            help="Wasm policy: a built-in name (boids, flocking, mlp_controller, anomaly,"
            " escalate, odometer_v1, odometer_v2) or a .wasm/.wat file; repeat to split the"
            " agents into equal groups, one per policy (default: boids)."
        ),
    ] = None,
    module: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME[=SLOT]: policy slot SLOT (default 0, the first --policy) runs the "
            "gateway's registry module NAME, fetched, verified and hot-swapped as the gateway "
            "assigns versions (docs/modules.md); repeat for more slots."
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(help="A label of this edge, for rollouts to labelled edges; repeat."),
    ] = None,
    module_report_ticks: Annotated[
        int, typer.Option(min=1, help="Ticks between two reports of how each module fares.")
    ] = default(EdgeConfig, "module_report_ticks"),
    policy_fallback: Annotated[
        Fallback, typer.Option(help="Action of a quarantined policy's agents.")
    ] = _FALLBACK,
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
        Path | None,
        typer.Option(
            help="Key, spool and state directory, one edge each (default: var/edge/EDGE_ID)."
        ),
    ] = None,
    key: Annotated[
        Path | None, typer.Option(help="Private key (default: DATA_DIR/edge.key, created).")
    ] = None,
    join_token: JoinToken = None,
    join_token_file: JoinTokenFile = None,
    spool_max_bytes: Annotated[
        int, typer.Option(min=1024, help="Bound of the on-disk spool of unacked batches.")
    ] = default(EdgeConfig, "spool_max_bytes"),
    overflow: Annotated[
        OverflowPolicy,
        typer.Option(help="When the spool is full: stop stepping, or drop the oldest batches."),
    ] = _OVERFLOW,
    spool_fsync: Annotated[
        FsyncPolicy,
        typer.Option(
            help="Spool durability: normal (survives kill -9), always (on disk before it is "
            "sent), off."
        ),
    ] = _SPOOL_FSYNC,
    max_datagram_size: Annotated[
        int,
        typer.Option(
            min=1200,
            max=65000,
            help="Largest UDP payload; above 1350 (LAN) qh3 probes the path up to it.",
        ),
    ] = default(EdgeConfig, "max_datagram_size"),
    stack: Stack = None,
    drain_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for acks at stop.")
    ] = default(EdgeConfig, "drain_timeout_s"),
    ack_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Seconds with batches outstanding and no ACK before the gateway is taken"
            " as gone: reconnect, or fail over to the next --gateway.",
        ),
    ] = default(EdgeConfig, "ack_timeout_s"),
    duration: Annotated[
        float | None, typer.Option(min=0, help="Stop after SECONDS (default: on signal).")
    ] = None,
    ticks: Annotated[int | None, typer.Option(min=0, help="Stop after this many ticks.")] = None,
    progress_interval: Annotated[
        float, typer.Option(min=0, help="Seconds between progress lines; 0 = none.")
    ] = default(EdgeConfig, "progress_interval_s"),
    io: Annotated[
        str,
        typer.Option(
            "--io",
            help="Observation source and action sink: sim, mqtt://HOST:PORT/PREFIX, "
            "replay:PATH, or a plug-in name (docs/io.md).",
        ),
    ] = default(EdgeConfig, "io"),
    obs_max_age: Annotated[
        float | None,
        typer.Option(
            min=0, help="Seconds after which a silent sensor's agent is stale (masked, no action)."
        ),
    ] = None,
    actions_out: Annotated[
        Path | None,
        typer.Option(help="Record every tick's actions to this file (compare: edgeswarm replay)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON lines on stdout even on a terminal.")
    ] = False,
    metrics_host: MetricsHost = _METRICS_HOST,
    metrics_port: MetricsPort = EDGE_METRICS_PORT,
    cpus: Cpus = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run an edge: agents step Wasm policies and stream observations to the gateway.

    Batches are spooled on disk until the gateway acknowledges them; while the gateway
    is unreachable the edge keeps stepping and reconnects with backoff. On a terminal
    it shows a live table; piped (or with --json), progress and the summary are JSON
    lines on stdout. Logs are JSON lines on stderr. /metrics, /healthz and /readyz on
    --metrics-port. Observations come from the built-in flocking simulator unless --io
    names another source: an MQTT broker (sensors publish, actuators subscribe), a
    recording exported with `edgeswarm log export`, or a plug-in (docs/io.md).

    Exit status: 0 every observation acknowledged; 1 some stayed unacknowledged (they
    stay spooled for the next start), were dropped or quarantined, or the edge failed
    (one error line); 2 a wrong option; 3 the gateway refused the key or token for good.

    Examples:

        edgeswarm edge --edge-id edge-7 --ca ca.crt --gateway gw.example:{port} \\
            --join-token-file /run/secrets/join-token

        EDGESWARM_JOIN_TOKEN=es1.… edgeswarm edge --edge-id edge-7 --ca ca.crt \\
            --gateway gw.example:{port} --policy boids --policy ./patrol.wasm

        edgeswarm edge --edge-id edge-7 --ca ca.crt --gateway gw.example:{port} --json | jq .

        edgeswarm edge --edge-id plant-1 --ca ca.crt --io mqtt://127.0.0.1:1883/plant-1 \\
            --obs-max-age 2

        edgeswarm edge --edge-id edge-8 --ca ca.crt --gateway gw.example:{port} \\
            --placement --checkpoint-interval 10

        edgeswarm edge --edge-id edge-9 --ca fleet-ca.crt \\
            --gateway gw-0.example:{port} --gateway gw-1.example:{port}

        edgeswarm edge --edge-id replay-1 --ca ca.crt --io replay:plant-1.rec --tick-hz 0 \\
            --actions-out replayed.act

        edgeswarm edge --edge-id edge-7 --ca ca.crt --gateway gw.example:{port} \\
            --policy flocking --module flocking --label canary
    """
    from edgeswarm.edge.io import IoError
    from edgeswarm.edge.policy.errors import PolicyLoadError
    from edgeswarm.edge.policy.loading import check_source
    from edgeswarm.edge.runner import EdgeRunner, emit, install_stop_signals

    from .edge_view import LiveView

    configure_logging(log_level, process="edge")
    with exits_on_error(f"edge {edge_id}"):
        pin_to_cpus(cpus)
        token = join_token_from(join_token, join_token_file)
        ca_file = existing_file(ca, "--ca")
        address, *more_gateways = (
            gateway_address(value, ca=ca_file, server_name=server_name, stack=quic_stack(stack))
            for value in gateway_addr or _DEFAULT_GATEWAYS
        )
        policies = tuple(policy or default(EdgeConfig, "policies"))
        for name in policies:
            try:
                check_source(name, max_bytes=int(module_max_mb * 1024 * 1024))
            except (OSError, PolicyLoadError) as exc:
                raise Usage(f"--policy {name}: {exc}") from None
        for path in model or ():
            existing_file(path, "--model")
        if placement and io != "sim":
            raise Usage("--placement runs with --io sim only (assigned agents enter its world)")
        modules = _modules(module or [], len(policies))
    config = EdgeConfig(
        edge_id=edge_id,
        gateway=address,
        more_gateways=tuple(more_gateways),
        agents=agents,
        first_agent_id=first_agent_id,
        placement=placement,
        checkpoint_interval=checkpoint_interval,
        policies=policies,
        policy_fallback=policy_fallback,
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
        modules=modules,
        labels=frozenset(label or ()),
        module_report_ticks=module_report_ticks,
        seed=seed,
        io=io,
        obs_max_age_s=obs_max_age,
        actions_out=actions_out,
        tick_hz=tick_hz,
        batch_agents=batch_agents,
        data_dir=data_dir or Path("var/edge") / edge_id,
        key_file=key,
        join_token=token,
        spool_max_bytes=spool_max_bytes,
        overflow=overflow,
        spool_fsync=spool_fsync,
        max_datagram_size=max_datagram_size,
        drain_timeout_s=drain_timeout,
        ack_timeout_s=ack_timeout,
        duration_s=duration,
        ticks=ticks,
        progress_interval_s=progress_interval,
        metrics_host=metrics_host,
        metrics_port=metrics_port_option(metrics_port),
    )
    view = None if as_json or not sys.stdout.isatty() else LiveView()

    async def run() -> dict[str, object]:
        try:
            runner = EdgeRunner(config, output=view or emit)
        except IoError as exc:  # an --io that cannot be opened: the command line is wrong
            raise Usage(str(exc)) from None
        install_stop_signals(runner)
        freeze_startup_objects("edge")
        return await runner.run()

    try:
        with exits_on_error(f"edge {edge_id}"):
            summary = asyncio.run(run())
    finally:
        if view is not None:
            view.close()
    left = ("in_flight", "dropped_batches", "quarantined_batches")
    if any(summary[name] for name in left):  # not all acknowledged: still spooled, or lost
        raise typer.Exit(ExitCode.FAILURE)


def _modules(values: list[str], policies: int) -> tuple[tuple[str, int], ...]:
    """``--module NAME[=SLOT]`` values, each slot one of the ``--policy`` slots."""
    from edgeswarm.edge.module_uplink import parse_module_option

    modules: dict[str, int] = {}
    for value in values:
        try:
            name, slot = parse_module_option(value)
        except ValueError as exc:
            raise Usage(f"--module: {exc}") from None
        if slot >= policies:
            raise Usage(f"--module {value}: the edge has {policies} --policy slot(s), 0-based")
        if name in modules or slot in modules.values():
            raise Usage(f"--module {value}: each module and each slot at most once")
        modules[name] = slot
    return tuple(modules.items())
