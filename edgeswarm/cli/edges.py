"""``edgeswarm edges list|drain|undrain`` and ``edgeswarm shards``: edges and placement."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .admin_target import Target, gateway_options
from .options import with_examples
from .placement_link import AsJson, ask, echo_json

edges_app = typer.Typer(
    name="edges",
    help="The gateway's edges: list them with state and agents, drain, undrain, weigh one.",
    no_args_is_help=True,
)

EdgeId = Annotated[str, typer.Argument(metavar="EDGE", help="The edge's id (--edge-id).")]


@edges_app.command("list")
@with_examples
@gateway_options
def list_edges(
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """List every edge the gateway has seen: state (active, draining, down), weight, agents.

    Exit status: 0 done; 1 the gateway cannot be reached or refused the operation (the
    line says why); 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm edges list

        edgeswarm edges list --context prod --json
    """
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
@with_examples
@gateway_options
def drain(
    edge_id: EdgeId,
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """Drain EDGE: its unpinned agents move to the other edges; it takes no new ones.

    Drain before an upgrade, undrain after.

    Exit status: 0 done; 1 the gateway cannot be reached or refused the operation (the
    line says why); 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm edges drain edge-2

        edgeswarm edges drain edge-2 --json | jq .moves
    """
    _drain(edge_id, True, as_json, target)


@edges_app.command("undrain")
@with_examples
@gateway_options
def undrain(
    edge_id: EdgeId,
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """Undrain EDGE: it takes its share of agents again.

    Exit status: 0 done; 1 the gateway cannot be reached or refused the operation (the
    line says why); 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm edges undrain edge-2
    """
    _drain(edge_id, False, as_json, target)


@edges_app.command("weight")
@with_examples
@gateway_options
def weight(
    edge_id: EdgeId,
    value: Annotated[
        float, typer.Argument(metavar="WEIGHT", min=0.001, max=1000, help="Capacity weight.")
    ],
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """Set EDGE's capacity weight: an edge of weight 2 takes twice the agents of weight 1.

    Exit status: 0 done; 1 the gateway cannot be reached or refused the operation (the
    line says why); 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm edges weight edge-3 2

        edgeswarm edges weight edge-3 0.5 --json
    """
    result = ask("edges.weight", {"edge_id": edge_id, "weight": value}, target)
    if as_json:
        echo_json(result)
        return
    typer.echo(
        f"{edge_id} weight {result['weight']:g}: {result['moves']:,} agents to move"
        f" (placement epoch {result['epoch']})"
    )


@with_examples
@gateway_options
def shards(
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """Show the placement: agents per edge, imbalance, unowned agents, the last move plan.

    Exit status: 0 done; 1 the gateway cannot be reached or refused the operation (the
    line says why); 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm shards

        edgeswarm shards --json | jq .imbalance
    """
    result = ask("shards", {}, target)
    if as_json:
        echo_json(result)
        return
    console = Console()
    table = Table(
        title=f"placement epoch {result['epoch']} ({result['placer']}):"
        f" {result['agents']:,} agents, {result['unowned']:,} unowned,"
        f" imbalance {result['imbalance']:.3f}, {result.get('moving', 0):,} moving"
    )
    table.add_column("edge")
    table.add_column("agents", justify="right")
    table.add_column("held", justify="right")  # by a connected --placement edge, now
    held = {e["edge_id"]: e["agents"] for e in result.get("held", [])}
    for edge in result["per_edge"]:
        now = held.get(edge["edge_id"])
        table.add_row(edge["edge_id"], f"{edge['agents']:,}", "-" if now is None else f"{now:,}")
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
