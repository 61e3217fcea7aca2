"""``edgeswarm infer``: an inference node (ONNX Runtime / LiteRT; native QUIC and OIP v2)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from edgeswarm.heap import freeze_startup_objects
from edgeswarm.inference.node import NodeConfig
from edgeswarm.inference.runtime import Device
from edgeswarm.telemetry import configure_logging

from .address import gateway_address, parse_address
from .cpus import Cpus, pin_to_cpus
from .edge import JoinToken, JoinTokenFile, existing_file, join_token_from
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

_NODE = NodeConfig()
"""The node's defaults (every field has one)."""
NODE_METRICS_PORT = cli_port(_NODE.metrics_port)
NODE_HTTP_PORT = cli_port(_NODE.http_port)


@with_examples
def infer(
    model: Annotated[
        list[Path],
        typer.Option(help="Model file (.onnx or .tflite), served under its file stem; repeatable."),
    ],
    device: Annotated[
        Device, typer.Option(help="auto: CUDA when onnxruntime-gpu sees a GPU, else the CPU.")
    ] = _NODE.device,
    node_id: Annotated[str, typer.Option(help="Peer id at the gateway.")] = _NODE.node_id,
    gateway_addr: Annotated[
        str | None,
        typer.Option("--gateway", help="Gateway host:port to take batches from (native QUIC)."),
    ] = None,
    ca: Annotated[Path | None, typer.Option(help="CA certificate of the gateway.")] = None,
    server_name: Annotated[str | None, typer.Option(help="Name in the certificate.")] = None,
    join_token: JoinToken = None,
    join_token_file: JoinTokenFile = None,
    key: Annotated[
        Path | None, typer.Option(help="Private key (default: DATA_DIR/node.key, created).")
    ] = None,
    data_dir: Annotated[Path, typer.Option(help="Where the node keeps its key.")] = _NODE.data_dir,
    http: Annotated[
        str,
        typer.Option(help="host:port of the OIP v2 HTTP endpoint; port 0 picks one, -1 none."),
    ] = f"{_NODE.http_host}:{NODE_HTTP_PORT}",
    max_rows: Annotated[
        int, typer.Option(min=1, help="Largest number of rows in one call.")
    ] = _NODE.max_rows,
    max_pending: Annotated[
        int, typer.Option(min=1, help="Calls that may wait for the models; beyond: refused.")
    ] = _NODE.max_pending,
    stack: Stack = None,
    metrics_host: MetricsHost = _NODE.metrics_host,
    metrics_port: MetricsPort = NODE_METRICS_PORT,
    cpus: Cpus = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Serve models for the gateway's heavy lane and over the Open Inference Protocol.

    Prints one JSON line when ready (`{"event": "listening", "http_port": ...,
    "models": {...}}`); logs are JSON on stderr; /metrics, /healthz and /readyz on
    --metrics-port.

    Exit status: 0 stopped by SIGTERM/SIGINT; 1 it cannot serve (a model that does not
    load, a port in use); 2 a wrong option; 3 the gateway refused its key or token.

    Examples:

        edgeswarm infer --model triage.onnx --http 127.0.0.1:8000

        EDGESWARM_JOIN_TOKEN=es1.… edgeswarm infer --model triage.onnx --device cuda \\
            --gateway gw.example:{port} --ca ca.crt --node-id gpu-0
    """
    from edgeswarm.inference.node import InferenceNode

    configure_logging(log_level, process="infer")
    with exits_on_error(f"inference node {node_id}"):
        pin_to_cpus(cpus)
        if (gateway_addr is None) != (ca is None):
            raise Usage("--gateway and --ca go together (the gateway to serve, and its CA)")
        token = join_token_from(join_token, join_token_file)
        for path in model:
            existing_file(path, "--model")
        http_host, _, http_port = http.rpartition(":")
        port: int | None = None
        if http_port != "-1":
            http_host, port = parse_address(http, "--http", listen=True)
        address = None
        if gateway_addr is not None and ca is not None:
            address = gateway_address(
                gateway_addr,
                ca=existing_file(ca, "--ca"),
                server_name=server_name,
                stack=quic_stack(stack),
            )
    config = NodeConfig(
        node_id=node_id,
        models=tuple(model),
        device=device,
        gateway=address,
        data_dir=data_dir,
        key_file=key,
        join_token=token,
        http_host=http_host or "127.0.0.1",
        http_port=port,
        metrics_host=metrics_host,
        metrics_port=metrics_port_option(metrics_port),
        max_rows=max_rows,
        max_pending=max_pending,
    )

    async def serve() -> None:
        node = InferenceNode(config)
        freeze_startup_objects("infer")
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        await node.run()

    with exits_on_error(f"inference node {node_id}"):
        asyncio.run(serve())
