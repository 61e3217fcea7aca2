"""``edgeswarm status``: every edge a gateway knows, its counters, when it was last seen."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .admin_target import Target, gateway_options
from .exits import exits_on_error
from .options import with_examples


def ago(seen: float, now: float) -> str:
    """``last_seen`` as people read it: ``4 s ago``, ``3 min ago``, ``never``."""
    if seen <= 0:
        return "never"
    seconds = max(0.0, now - seen)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def status_table(result: dict[str, Any], now: float) -> Table:
    """The STATUS answer as a table, one row per edge."""
    table = Table(title=f"gateway {result['gateway_id']} (up {result['uptime_s']:.0f} s)")
    columns = ("edge", "connected", "address", "last seen", "agents", "batches")
    for column in (*columns, "observations", "last seq", "errors"):
        table.add_column(column, justify="left" if column in columns[:4] else "right")
    for edge in result["edges"]:
        table.add_row(
            edge["peer_id"],
            "yes" if edge["connected"] else "no",
            edge.get("address") or "-",
            ago(edge.get("last_seen", 0.0), now),
            f"{edge['agents']:,}",
            f"{edge['batches']:,}",
            f"{edge['observations']:,}",
            str(edge["last_seq"]),
            str(edge["errors"]),
        )
    return table


@with_examples
@gateway_options
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    *,
    target: Target,
) -> None:
    """Ask a gateway for every edge's status: address, last seen, agents, what it sent.

    `last_seen` in --json is Unix seconds (0: not since the gateway started).

    Needs an admin key enrolled with role admin: `edgeswarm keys init --key admin.key`,
    then on the gateway `edgeswarm keys add --role admin --peer-id admin --public-key …`.
    Save the connection once with `edgeswarm context add`.

    Exit status: 0 answered; 1 the gateway cannot be reached; 2 a wrong option or
    context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm status --gateway gw.example:{port} --ca ca.crt --key admin.key

        edgeswarm context add prod --gateway gw.example:{port} --ca ca.crt --key admin.key
        edgeswarm status                        # the current context
        edgeswarm status --context prod --json | jq '.edges[] | select(.connected | not)'
    """
    from edgeswarm.client.admin import fetch_status

    resolved = target.resolve_for("status")
    with exits_on_error(f"gateway {resolved.address}"):
        result = asyncio.run(
            fetch_status(
                resolved.address,
                key=resolved.key,
                admin_id=resolved.admin_id,
                timeout=target.timeout,
            )
        )
    if as_json:
        typer.echo(json.dumps(result))
        return
    Console().print(status_table(result, time.time()))
