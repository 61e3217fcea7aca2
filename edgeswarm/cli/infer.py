"""``edgeswarm infer``: an inference node (ONNX Runtime / LiteRT; native QUIC and OIP v2)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, cast

import typer

from edgeswarm.inference.node import NodeConfig
from edgeswarm.inference.runtime import DEVICES, Device
from edgeswarm.telemetry import configure_logging

from .address import gateway_address
from .options import choice, cli_port, exits_on_error, quic_stack
from .options import metrics_port as metrics_port_option

_NODE = NodeConfig()
"""The node's defaults (every field has one)."""
NODE_METRICS_PORT = cli_port(_NODE.metrics_port)
NODE_HTTP_PORT = cli_port(_NODE.http_port)


def infer(
    model: Annotated[
        list[Path],
        typer.Option(help="Model file (.onnx or .tflite), served under its file stem; repeatable."),
    ],
    device: Annotated[
        str, typer.Option(help="auto (CUDA when onnxruntime-gpu sees a GPU), cuda or cpu.")
    ] = _NODE.device,
    node_id: Annotated[str, typer.Option(help="Peer id at the gateway.")] = _NODE.node_id,
    gateway_addr: Annotated[
        str | None,
        typer.Option("--gateway", help="Gateway host:port to take batches from (native QUIC)."),
    ] = None,
    ca: Annotated[Path | None, typer.Option(help="CA certificate of the gateway.")] = None,
    server_name: Annotated[str | None, typer.Option(help="Name in the certificate.")] = None,
    join_token: Annotated[
        str | None, typer.Option(help="Token from `edgeswarm keys issue --role inference`.")
    ] = None,
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
    stack: Annotated[
        str | None, typer.Option(help="QUIC stack: aioquic or qh3 (default: $EDGESWARM_QUIC).")
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Prometheus port; 0 picks a free one; -1 disables.")
    ] = NODE_METRICS_PORT,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = "INFO",
) -> None:
    """Serve models for the gateway's heavy lane and over the Open Inference Protocol.

    Prints one JSON line when ready (`{"event": "listening", "http_port": ...,
    "models": {...}}`); logs are JSON on stderr.

    Examples:

      edgeswarm infer --model triage.onnx --http 127.0.0.1:8000

      edgeswarm infer --model triage.onnx --device cuda --gateway gw.example --ca ca.crt \\
          --join-token es1.... --node-id gpu-0
    """
    from edgeswarm.client.address import split_host_port
    from edgeswarm.inference.node import InferenceNode

    configure_logging(log_level, process="infer")
    if (gateway_addr is None) != (ca is None):
        raise typer.BadParameter("--gateway and --ca go together")
    http_host, _, http_port = http.rpartition(":")
    port: int | None = None if http_port == "-1" else split_host_port(http)[1]
    config = NodeConfig(
        node_id=node_id,
        models=tuple(model),
        device=cast(Device, choice(device, DEVICES, "--device")),
        gateway=None
        if gateway_addr is None or ca is None
        else gateway_address(gateway_addr, ca=ca, server_name=server_name, stack=quic_stack(stack)),
        data_dir=data_dir,
        key_file=key,
        join_token=join_token,
        http_host=http_host or "127.0.0.1",
        http_port=port,
        metrics_port=metrics_port_option(metrics_port),
        max_rows=max_rows,
        max_pending=max_pending,
    )

    async def serve() -> None:
        node = InferenceNode(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, node.stop)
        await node.run()

    with exits_on_error(f"inference node {node_id}"):
        asyncio.run(serve())
