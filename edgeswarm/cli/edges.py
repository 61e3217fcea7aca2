"""``edgeswarm edges list|drain|undrain`` and ``edgeswarm shards``: edges and placement."""

from __future__ import annotations

from typing import Annotated

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

edges_app = typer.Typer(
    name="edges",
    help="The gateway's edges: list them with state and agents, drain, undrain, weigh one.",
    no_args_is_help=True,
)

EdgeId = Annotated[str, typer.Argument(metavar="EDGE", help="The edge's id (--edge-id).")]


@edges_app.command("list")
def list_edges(
    ca: Ca,
    gateway_addr: GatewayAddr = DEFAULTS["gateway_addr"],
    server_name: ServerName = None,
    key: AdminKey = DEFAULTS["key"],
    admin_id: AdminId = DEFAULTS["admin_id"],
    as_json: AsJson = False,
    timeout: Timeout = DEFAULTS["timeout"],
) -> None:
    """List every edge the gateway has seen: state (active, draining, down), weight, agents.

    Example: `edgeswarm edges list --ca var/gateway/ca.crt`.
    """
    target = Target(ca, gateway_addr, server_name, key, admin_id, timeout)
    result = ask("edges.list", {}, target)
    if as_json:
        echo_json(result)
        return
    table = Table(title=f"edges (placement epoch {result['epoch']})")
    for column in ("edge", "state", "weight", "agents"):
        table.add_column(column, justify="left" if column in ("edge", "state") else "right")
    for edge in result["edges"]:
        table.add_row(edge["edge_id"], edge["state"], f"{edge['weight']:g}", f"{edge['agents']:,}")
    Console().print(table)


def _drain(edge_id: str, drained: bool, as_json: bool, target: Target) -> None:
    result = ask("edges.drain" if drained else "edges.undrain", {"edge_id": edge_id}, target)
    if as_json:
        echo_json(result)
        return
    verb = "drained" if drained else "undrained"
    typer.echo(
        f"{edge_id} {verb}: {result['moves']:,} agents to move (placement epoch {result['epoch']})"
    )


@edges_app.command("drain")
def drain(
    ca: Ca,
    edge_id: EdgeId,
    gateway_addr: GatewayAddr = DEFAULTS["gateway_addr"],
    server_name: ServerName = None,
    key: AdminKey = DEFAULTS["key"],
    admin_id: AdminId = DEFAULTS["admin_id"],
    as_json: AsJson = False,
    timeout: Timeout = DEFAULTS["timeout"],
) -> None:
    """Drain EDGE: its unpinned agents move to the other edges; it takes no new ones.

    Example: `edgeswarm edges drain edge-2 --ca var/gateway/ca.crt` (then upgrade the edge,
    then `edgeswarm edges undrain edge-2`).
    """
    target = Target(ca, gateway_addr, server_name, key, admin_id, timeout)
    _drain(edge_id, True, as_json, target)


@edges_app.command("undrain")
def undrain(
    ca: Ca,
    edge_id: EdgeId,
    gateway_addr: GatewayAddr = DEFAULTS["gateway_addr"],
    server_name: ServerName = None,
    key: AdminKey = DEFAULTS["key"],
    admin_id: AdminId = DEFAULTS["admin_id"],
    as_json: AsJson = False,
    timeout: Timeout = DEFAULTS["timeout"],
) -> None:
    """Undrain EDGE: it takes its share of agents again.

    Example: `edgeswarm edges undrain edge-2 --ca var/gateway/ca.crt --json`.
    """
    target = Target(ca, gateway_addr, server_name, key, admin_id, timeout)
    _drain(edge_id, False, as_json, target)


@edges_app.command("weight")
def weight(
    ca: Ca,
    edge_id: EdgeId,
    value: Annotated[
        float, typer.Argument(metavar="WEIGHT", min=0.001, max=1000, help="Capacity weight.")
    ],
    gateway_addr: GatewayAddr = DEFAULTS["gateway_addr"],
    server_name: ServerName = None,
    key: AdminKey = DEFAULTS["key"],
    admin_id: AdminId = DEFAULTS["admin_id"],
    as_json: AsJson = False,
    timeout: Timeout = DEFAULTS["timeout"],
) -> None:
    """Set EDGE's capacity weight: an edge of weight 2 takes twice the agents of weight 1.

    Example: `edgeswarm edges weight edge-3 2 --ca var/gateway/ca.crt` (a machine with twice
    the cores).
    """
    target = Target(ca, gateway_addr, server_name, key, admin_id, timeout)
    result = ask("edges.weight", {"edge_id": edge_id, "weight": value}, target)
    if as_json:
        echo_json(result)
        return
    typer.echo(
        f"{edge_id} weight {result['weight']:g}: {result['moves']:,} agents to move"
        f" (placement epoch {result['epoch']})"
    )


def shards(
    ca: Ca,
    gateway_addr: GatewayAddr = DEFAULTS["gateway_addr"],
    server_name: ServerName = None,
    key: AdminKey = DEFAULTS["key"],
    admin_id: AdminId = DEFAULTS["admin_id"],
    as_json: AsJson = False,
    timeout: Timeout = DEFAULTS["timeout"],
) -> None:
    """Show the placement: agents per edge, imbalance, unowned agents, the last move plan.

    Example: `edgeswarm shards --ca var/gateway/ca.crt --json`.
    """
    target = Target(ca, gateway_addr, server_name, key, admin_id, timeout)
    result = ask("shards", {}, target)
    if as_json:
        echo_json(result)
        return
    console = Console()
    table = Table(
        title=f"placement epoch {result['epoch']} ({result['placer']}):"
        f" {result['agents']:,} agents, {result['unowned']:,} unowned,"
        f" imbalance {result['imbalance']:.3f}"
    )
    table.add_column("edge")
    table.add_column("agents", justify="right")
    for edge in result["per_edge"]:
        table.add_row(edge["edge_id"], f"{edge['agents']:,}")
    console.print(table)
    plan = result["last_plan"]
    if plan is not None:
        moves = Table(
            title=f"last move plan: epoch {plan['from_epoch']} -> {plan['to_epoch']},"
            f" {plan['agents']:,} agents"
        )
        for column in ("kind", "from", "to", "agents"):
            moves.add_column(column, justify="right" if column == "agents" else "left")
        for batch in plan["batches"]:
            moves.add_row(
                batch["kind"],
                batch["source"] or "-",
                batch["target"] or "-",
                f"{batch['agents']:,}",
            )
        console.print(moves)
