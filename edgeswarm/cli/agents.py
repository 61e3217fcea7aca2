"""``edgeswarm agents add|list|show``: the swarm's agents as the gateway owns them.

The group is meant to grow: building, signing, publishing and rolling out
agent modules (issue 18) add their commands to :data:`agents_app` beside these.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .placement_link import (
    DEFAULTS,
    AdminId,
    AdminKey,
    AsJson,
    Ca,
    GatewayAddr,
    ServerName,
    Target,
    Timeout,
    ask,
    echo_json,
)

agents_app = typer.Typer(
    name="agents",
    help="The swarm's agents: add them, list them with their owner edge, show one.",
    no_args_is_help=True,
)


def _labels(values: list[str]) -> dict[str, str]:
    labels = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"a label is NAME=VALUE, got {value!r}")
        labels[name] = text
    return labels


@agents_app.command("add")
def add(
    ca: Ca,
    count: Annotated[int, typer.Option(min=1, help="How many agents (consecutive ids).")],
    first_id: Annotated[int, typer.Option(min=0, help="Id of the first agent.")],
    policy: Annotated[str, typer.Option(help="Policy (Wasm module name) the agents run.")],
    label: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE label; repeat for more.")
    ] = None,
    pin: Annotated[
        str | None, typer.Option(help="Edge the agents are bound to; they never move.")
    ] = None,
    gateway_addr: GatewayAddr = DEFAULTS["gateway_addr"],
    server_name: ServerName = None,
    key: AdminKey = DEFAULTS["key"],
    admin_id: AdminId = DEFAULTS["admin_id"],
    as_json: AsJson = False,
    timeout: Timeout = DEFAULTS["timeout"],
) -> None:
    """Add COUNT agents with ids FIRST_ID.. to the swarm; the gateway places them on edges.

    Example: `edgeswarm agents add --ca var/gateway/ca.crt --first-id 0 --count 10000
    --policy forager --label zone=north`. Pinned agents (`--pin edge-1`) stay on that edge.
    """
    args: dict[str, Any] = {
        "first_id": first_id,
        "count": count,
        "policy": policy,
        "labels": _labels(label or []),
    }
    if pin is not None:
        args["pin"] = pin
    target = Target(ca, gateway_addr, server_name, key, admin_id, timeout)
    result = ask("agents.add", args, target)
    if as_json:
        echo_json(result)
    else:
        typer.echo(
            f"added {result['added']:,} agents; the swarm has {result['agents']:,}"
            f" (placement epoch {result['epoch']})"
        )


@agents_app.command("list")
def list_agents(
    ca: Ca,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (by id).")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Show at most this many.")] = 100,
    gateway_addr: GatewayAddr = DEFAULTS["gateway_addr"],
    server_name: ServerName = None,
    key: AdminKey = DEFAULTS["key"],
    admin_id: AdminId = DEFAULTS["admin_id"],
    as_json: AsJson = False,
    timeout: Timeout = DEFAULTS["timeout"],
) -> None:
    """List swarm agents by id with policy, labels, pin and owner edge.

    Example: `edgeswarm agents list --ca var/gateway/ca.crt --limit 20 --json`.
    """
    target = Target(ca, gateway_addr, server_name, key, admin_id, timeout)
    result = ask("agents.list", {"offset": offset, "limit": limit}, target)
    if as_json:
        echo_json(result)
        return
    table = Table(title=f"agents {offset}..{offset + len(result['agents'])} of {result['total']:,}")
    for column in ("agent", "policy", "labels", "pin", "owner"):
        table.add_column(column, justify="right" if column == "agent" else "left")
    for agent in result["agents"]:
        table.add_row(
            str(agent["agent_id"]),
            agent["policy"],
            json.dumps(agent["labels"]) if agent["labels"] else "",
            agent["pin"] or "",
            agent["owner"] or "(none)",
        )
    Console().print(table)


@agents_app.command("show")
def show(
    ca: Ca,
    agent_id: Annotated[int, typer.Argument(metavar="ID", min=0, help="The agent's id.")],
    gateway_addr: GatewayAddr = DEFAULTS["gateway_addr"],
    server_name: ServerName = None,
    key: AdminKey = DEFAULTS["key"],
    admin_id: AdminId = DEFAULTS["admin_id"],
    as_json: AsJson = False,
    timeout: Timeout = DEFAULTS["timeout"],
) -> None:
    """Show one agent: policy, labels, pin, owner edge, placement epoch, last checkpoint.

    Example: `edgeswarm agents show 42 --ca var/gateway/ca.crt`.
    """
    target = Target(ca, gateway_addr, server_name, key, admin_id, timeout)
    result = ask("agents.show", {"agent_id": agent_id}, target)
    if as_json:
        echo_json(result)
        return
    table = Table(title=f"agent {agent_id}", show_header=False)
    checkpoint = result["checkpoint"]
    rows = {
        "policy": result["policy"],
        "labels": json.dumps(result["labels"]),
        "pin": result["pin"] or "",
        "owner": result["owner"] or "(none)",
        "placement epoch": str(result["epoch"]),
        "last checkpoint": "none"
        if checkpoint is None
        else f"tick {checkpoint['tick']} from {checkpoint['edge_id']}",
    }
    for name, value in rows.items():
        table.add_row(name, value)
    Console().print(table)
