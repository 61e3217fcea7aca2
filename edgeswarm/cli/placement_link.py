"""What the placement commands share: the gateway they ask (options > context > defaults,
as ``status`` and ``state``) and one request to it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeswarm.telemetry import configure_logging

from .admin_target import admin_target
from .exits import exits_on_error, fail

__all__ = ["AsJson", "Target", "ask", "echo_json"]

AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@dataclass(frozen=True)
class Target:
    """Which gateway a command asks, and as whom (the common options, unresolved)."""

    context: str | None
    gateway_addr: str | None
    ca: Path | None
    key: Path | None
    admin_id: str | None
    server_name: str | None
    timeout: float


def ask(op: str, args: dict[str, Any], target: Target) -> dict[str, Any]:
    """Send one placement operation; its result, or exit with the one-line reason:
    1 the gateway is unreachable or refused the operation, 2 a wrong option or
    context, 3 the gateway refused the admin key."""
    from edgeswarm.client.admin import placement_request

    configure_logging("ERROR", process="placement")  # the error line says it all
    with exits_on_error():
        resolved = admin_target(
            context=target.context,
            gateway=target.gateway_addr,
            ca=target.ca,
            key=target.key,
            admin_id=target.admin_id,
            server_name=target.server_name,
            timeout=target.timeout,
        )
    with exits_on_error(f"gateway {resolved.address}"):
        reply = asyncio.run(
            placement_request(
                resolved.address,
                op,
                args,
                key=resolved.key,
                admin_id=resolved.admin_id,
                timeout=target.timeout,
            )
        )
    if not reply.ok:
        fail(f"gateway {resolved.address} refused {op}: {reply.message}")
    return reply.result


def echo_json(result: dict[str, Any]) -> None:
    typer.echo(json.dumps(result))
