"""``edgeswarm gateway``: run a gateway (QUIC listener, durable log, swarm state, heavy lane)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from edgeswarm.gateway.config import GatewayConfig
from edgeswarm.heap import freeze_startup_objects
from edgeswarm.placement.lease import LeaseError
from edgeswarm.storage import FsyncPolicy
from edgeswarm.telemetry import configure_logging

from .address import parse_address
from .cpus import Cpus, pin_to_cpus
from .exits import Usage, exits_on_error
from .options import (
    LogLevel,
    MetricsHost,
    MetricsPort,
    Stack,
    cli_port,
    quic_stack,
    with_examples,
)
from .options import metrics_port as metrics_port_option

_GATEWAY = GatewayConfig()
"""The gateway's defaults (every field has one)."""
GATEWAY_METRICS_PORT = cli_port(_GATEWAY.metrics_port)
_FSYNC = FsyncPolicy(_GATEWAY.fsync)


def _model_route(value: str) -> tuple[str, str]:
    """``--infer-oip MODEL=URL`` -> (model, url)."""
    model, sep, url = value.partition("=")
    if not sep or not model or not url.startswith(("http://", "https://")):
        raise Usage(f"--infer-oip takes MODEL=http://host:port, got {value!r}")
    return model, url


def _tls_files(cert: Path | None, key: Path | None) -> None:
    """``--cert`` and ``--key`` come together and name files."""
    if (cert is None) != (key is None):
        given, missing = ("--cert", "--key") if key is None else ("--key", "--cert")
        raise Usage(f"{given} needs {missing} (the certificate and its private key go together)")
    for path, option in ((cert, "--cert"), (key, "--key")):
        if path is not None and not path.is_file():
            raise Usage(f"{option}: no file {path}")


@with_examples
def gateway(
    listen: Annotated[str, typer.Option(help="host:port to listen on (port 0 picks one).")] = (
        f"{_GATEWAY.host}:{_GATEWAY.port}"
    ),
    data_dir: Annotated[
        Path, typer.Option(help="Directory for certificates and state.")
    ] = _GATEWAY.data_dir,
    cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM).")] = None,
    key: Annotated[Path | None, typer.Option(help="Private key of --cert (PEM).")] = None,
    gateway_id: Annotated[str, typer.Option(help="Name of this gateway.")] = _GATEWAY.gateway_id,
    max_batch_agents: Annotated[
        int, typer.Option(help="Largest OBS_BATCH accepted.")
    ] = _GATEWAY.max_batch_agents,
    credit_window: Annotated[
        int, typer.Option(min=1, help="Batches an edge may have unacknowledged.")
    ] = _GATEWAY.credit_window,
    hello_timeout: Annotated[
        float,
        typer.Option(
            min=0.1, help="Seconds from a connection's first packet to WELCOME; else closed."
        ),
    ] = _GATEWAY.hello_timeout_s,
    max_unauthenticated: Annotated[
        int, typer.Option(min=1, help="Connections not authenticated yet, at once, in all.")
    ] = _GATEWAY.preauth.max_unauthenticated,
    max_unauthenticated_per_address: Annotated[
        int, typer.Option(min=1, help="Connections not authenticated yet from one IP address.")
    ] = _GATEWAY.preauth.max_unauthenticated_per_address,
    retry_above: Annotated[
        int,
        typer.Option(
            min=0,
            help="Unauthenticated connections beyond which new ones must answer a QUIC Retry.",
        ),
    ] = _GATEWAY.preauth.retry_above,
    fsync: Annotated[
        FsyncPolicy,
        typer.Option(help="Durable log: always (power-loss safe), normal (crash safe), off."),
    ] = _FSYNC,
    max_datagram_size: Annotated[
        int,
        typer.Option(
            min=1200,
            max=65000,
            help="Largest UDP payload sent; above 1350 (LAN) qh3 probes the path up to it.",
        ),
    ] = _GATEWAY.transport.max_datagram_size,
    log_scrub_interval: Annotated[
        float,
        typer.Option(min=0, help="Seconds between background checks of the whole log (0: never)."),
    ] = _GATEWAY.log_scrub_interval_s or 0.0,
    stack: Stack = None,
    peer: Annotated[
        list[str] | None,
        typer.Option(
            help="Peer gateway host:port to replicate swarm state with; repeatable"
            " (an entry whose first DNS label is --gateway-id is this gateway: skipped)."
        ),
    ] = None,
    shard_edges: Annotated[
        bool,
        typer.Option(
            "--shard-edges",
            help="Split the edges between this gateway and its --peer gateways (the gateway"
            " ring): an edge that belongs to another is sent there with REDIRECT. Enroll"
            " every edge at every gateway first.",
        ),
    ] = _GATEWAY.shard_edges,
    peer_timeout: Annotated[
        float,
        typer.Option(
            min=0.3,
            help="Seconds a peer gateway may answer nothing before it leaves the gateway"
            " ring (its edges then belong to the others; they come back when it does).",
        ),
    ] = _GATEWAY.peer_timeout_s,
    placer: Annotated[
        str,
        typer.Option(help="How agents are placed on edges: ring, rendezvous or maglev."),
    ] = _GATEWAY.placer,
    edge_timeout: Annotated[
        float,
        typer.Option(min=0, help="Seconds an edge may be gone before its agents move."),
    ] = _GATEWAY.edge_timeout_s,
    max_moves: Annotated[
        int,
        typer.Option(
            min=1,
            help="Agents that may be moving between edges at once; a drain or a join"
            " moves agents in rounds of at most this many.",
        ),
    ] = _GATEWAY.max_moves,
    lease: Annotated[
        float | None,
        typer.Option(
            help="Seconds a placement edge may step its agents after its last answered"
            " request (default: half of --edge-timeout; at most --edge-timeout - 0.25)."
        ),
    ] = _GATEWAY.lease_s,
    lease_ticks: Annotated[
        int,
        typer.Option(
            help="Ticks a placement edge may step past its last acknowledged tick; a DOWN"
            " edge's agents resume this many ticks past their last logged tick."
        ),
    ] = _GATEWAY.lease_ticks,
    idle_timeout: Annotated[
        float,
        typer.Option(min=1, help="Seconds of silence after which a peer's QUIC session ends."),
    ] = _GATEWAY.idle_timeout_s,
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
    infer_max_batch: Annotated[
        int, typer.Option(min=1, help="Heavy lane: rows per batch sent to an inference node.")
    ] = _GATEWAY.heavy.max_batch_rows,
    infer_max_wait_ms: Annotated[
        float, typer.Option(min=0, help="Heavy lane: longest a request waits for its batch, ms.")
    ] = _GATEWAY.heavy.max_wait_s * 1e3,
    infer_window: Annotated[
        int, typer.Option(min=1, help="Heavy lane: requests an edge may have unanswered.")
    ] = _GATEWAY.heavy.infer_window,
    infer_oip: Annotated[
        list[str] | None,
        typer.Option(
            help="MODEL=URL: send MODEL's batches to the OIP v2 server at URL (Triton, KServe, "
            "an edgeswarm node's --http); repeatable."
        ),
    ] = None,
    metrics_host: MetricsHost = _GATEWAY.metrics_host,
    metrics_port: MetricsPort = GATEWAY_METRICS_PORT,
    cpus: Cpus = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run a gateway. Prints one JSON line with the bound address on stdout when ready.

    Peers must hold an enrolled key: see `edgeswarm keys`. Connections that have
    not authenticated yet get a small budget (--hello-timeout, --max-unauthenticated,
    --retry-above; see docs/operations.md, Limits). A peer gateway
    (--peer) must have this gateway's key (`public_key` in the ready line)
    enrolled with `--role gateway --peer-id GATEWAY_ID`. /metrics, /healthz and
    /readyz on --metrics-port. One gateway per --data-dir.

    Exit status: 0 stopped by SIGTERM/SIGINT; 1 it cannot start or serve (port in use,
    data directory in use or damaged: one error line); 2 a wrong option.

    Examples:

        edgeswarm gateway --listen 0.0.0.0:{port} --data-dir /var/lib/edgeswarm

        edgeswarm gateway --data-dir /var/lib/edgeswarm --metrics-host 0.0.0.0 \
            --peer gw-b.example:{port} --gateway-id gw-a

        edgeswarm gateway --data-dir /var/lib/edgeswarm --edge-timeout 10 --lease 8
    """
    from edgeswarm.gateway import Gateway
    from edgeswarm.identity import public_key_text

    configure_logging(log_level, process="gateway")
    with exits_on_error():
        _tls_files(cert, key)
        pin_to_cpus(cpus)
        host, port = parse_address(listen, "--listen", listen=True)
        peers = tuple(parse_address(p, "--peer") for p in peer or ())
        twice = sorted({f"{h}:{n}" for h, n in peers if peers.count((h, n)) > 1})
        if twice:
            raise Usage(f"--peer {', '.join(twice)} given more than once; name each peer once")
        routes = tuple(_model_route(route) for route in infer_oip or ())
        if peer_ca is not None and not peer_ca.is_file():
            raise Usage(f"--peer-ca: no file {peer_ca}")
    config = GatewayConfig(
        host=host,
        port=port,
        data_dir=data_dir,
        cert=cert,
        key=key,
        gateway_id=gateway_id,
        max_batch_agents=max_batch_agents,
        credit_window=credit_window,
        hello_timeout_s=hello_timeout,
        preauth=dataclasses.replace(
            _GATEWAY.preauth,
            max_unauthenticated=max_unauthenticated,
            max_unauthenticated_per_address=max_unauthenticated_per_address,
            retry_above=retry_above,
        ),
        fsync=fsync,
        transport=dataclasses.replace(_GATEWAY.transport, max_datagram_size=max_datagram_size),
        log_scrub_interval_s=log_scrub_interval or None,
        stack=quic_stack(stack),
        metrics_host=metrics_host,
        metrics_port=metrics_port_option(metrics_port),
        identity_key=identity_key,
        peers=peers,
        peer_ca=peer_ca,
        peer_timeout_s=peer_timeout,
        shard_edges=shard_edges,
        placer=placer,
        edge_timeout_s=edge_timeout,
        max_moves=max_moves,
        lease_s=lease,
        lease_ticks=lease_ticks,
        idle_timeout_s=idle_timeout,
        heavy=dataclasses.replace(
            _GATEWAY.heavy,
            max_batch_rows=infer_max_batch,
            max_wait_s=infer_max_wait_ms / 1e3,
            max_queued_rows=max(infer_max_batch, _GATEWAY.heavy.max_queued_rows),
            infer_window=infer_window,
        ),
        infer_oip=routes,
    )
    with exits_on_error():
        try:
            config.lease  # noqa: B018  (checks --lease against --edge-timeout)
        except LeaseError as exc:
            raise Usage(str(exc)) from None

    async def serve() -> None:
        with exits_on_error(f"gateway {gateway_id}"):
            server = Gateway(config)
            try:
                await server.start()
            except BaseException:
                server.close()
                raise
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
        freeze_startup_objects("gateway")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.close()
        await asyncio.sleep(0.05)

    asyncio.run(serve())
