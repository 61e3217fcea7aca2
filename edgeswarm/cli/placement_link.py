"""What the placement commands share: the gateway they ask (options > context > defaults,
as ``status`` and ``state``) and one request to it."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from .admin_target import Target
from .exits import exits_on_error, fail

__all__ = ["AsJson", "ask", "echo_json"]

AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


def ask(op: str, args: dict[str, Any], target: Target) -> dict[str, Any]:
    """Send one placement operation; its result, or exit with the one-line reason:
    1 the gateway is unreachable or refused the operation, 2 a wrong option or
    context, 3 the gateway refused the admin key."""
    from edgeswarm.client.admin import placement_request

    resolved = target.resolve_for("placement")
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
