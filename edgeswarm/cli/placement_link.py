"""What the placement commands share: the gateway options and one request to it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from edgeswarm.client.admin import DEFAULT_ADMIN_ID, DEFAULT_TIMEOUT_S

from .address import DEFAULT_GATEWAY, gateway_address
from .options import DEFAULT_ADMIN_KEY, exits_on_error, fail, quic_stack
from .state import AdminId, AdminKey, Ca, GatewayAddr, ServerName, Timeout

__all__ = [
    "AdminId",
    "AdminKey",
    "AsJson",
    "Ca",
    "GatewayAddr",
    "ServerName",
    "Target",
    "Timeout",
    "ask",
    "echo_json",
]

AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]

DEFAULTS: dict[str, Any] = {
    "gateway_addr": DEFAULT_GATEWAY,
    "key": DEFAULT_ADMIN_KEY,
    "admin_id": DEFAULT_ADMIN_ID,
    "timeout": DEFAULT_TIMEOUT_S,
}


@dataclass(frozen=True)
class Target:
    """Which gateway a command asks, and as whom (from the common options)."""

    ca: Path
    gateway_addr: str
    server_name: str | None
    key: Path
    admin_id: str
    timeout: float


def ask(op: str, args: dict[str, Any], target: Target) -> dict[str, Any]:
    """Send one placement operation; its result, or exit with the gateway's one-line reason."""
    ca, gateway_addr, server_name = target.ca, target.gateway_addr, target.server_name
    key, admin_id, timeout = target.key, target.admin_id, target.timeout
    from edgeswarm.client.admin import placement_request
    from edgeswarm.identity.keys import KeyPair

    address = gateway_address(
        gateway_addr, ca=ca, server_name=server_name, stack=quic_stack(None), timeout=timeout
    )
    with exits_on_error():
        pair = KeyPair.load(key)
    with exits_on_error(f"cannot reach gateway {gateway_addr}"):
        reply = asyncio.run(
            placement_request(address, op, args, key=pair, admin_id=admin_id, timeout=timeout)
        )
    if not reply.ok:
        fail(f"gateway {gateway_addr} refused {op}: {reply.message}")
    return reply.result


def echo_json(result: dict[str, Any]) -> None:
    typer.echo(json.dumps(result))
