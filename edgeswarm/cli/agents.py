"""``edgeswarm agents``: the swarm's agents as the gateway owns them (``add``,
``list``, ``show``) and the Wasm agent modules they run (``build``, ``sign``,
``publish``, ``modules``, ``history``, ``trust``, ``push``, ``pull``: :mod:`.modules`;
``rollout``, ``rollback``: :mod:`.module_rollout`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .admin_target import Target, gateway_options
from .module_rollout import register_rollout_commands
from .modules import register_module_commands
from .options import with_examples
from .placement_link import AsJson, ask, echo_json

agents_app = typer.Typer(
    name="agents",
    help="The swarm's agents (add, list, show) and their Wasm modules (build, sign, publish, "
    "modules, history, trust, push, pull, rollout, rollback).",
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
@with_examples
@gateway_options
def add(
    count: Annotated[int, typer.Option(min=1, help="How many agents (consecutive ids).")],
    first_id: Annotated[int, typer.Option(min=0, help="Id of the first agent.")],
    policy: Annotated[str, typer.Option(help="Policy (Wasm module name) the agents run.")],
    label: Annotated[
        list[str] | None, typer.Option(help="NAME=VALUE label; repeat for more.")
    ] = None,
    pin: Annotated[
        str | None, typer.Option(help="Edge the agents are bound to; they never move.")
    ] = None,
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """Add COUNT agents with ids FIRST_ID.. to the swarm; the gateway places them on edges.

    Pinned agents (`--pin EDGE`) stay on that edge; the others are placed by the ring.

    Exit status: 0 done; 1 the gateway cannot be reached or refused the operation (the
    line says why); 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm agents add --first-id 0 --count 10000 --policy forager --label zone=north

        edgeswarm agents add --first-id 900000 --count 4 --policy pump --pin edge-7 --context prod
    """
    args: dict[str, Any] = {
        "first_id": first_id,
        "count": count,
        "policy": policy,
        "labels": _labels(label or []),
    }
    if pin is not None:
        args["pin"] = pin
    result = ask("agents.add", args, target)
    if as_json:
        echo_json(result)
    else:
        typer.echo(
            f"added {result['added']:,} agents; the swarm has {result['agents']:,}"
            f" (placement epoch {result['epoch']})"
        )


@agents_app.command("list")
@with_examples
@gateway_options
def list_agents(
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (by id).")] = 0,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Show at most this many.")] = 100,
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """List swarm agents by id with policy, labels, pin and owner edge.

    Exit status: 0 done; 1 the gateway cannot be reached or refused the operation (the
    line says why); 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm agents list --limit 20

        edgeswarm agents list --offset 100000 --json | jq '.agents[].owner'
    """
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
@with_examples
@gateway_options
def show(
    agent_id: Annotated[int, typer.Argument(metavar="ID", min=0, help="The agent's id.")],
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """Show one agent: policy, labels, pin, owner edge, placement epoch, last checkpoint.

    Exit status: 0 done; 1 the gateway cannot be reached or refused the operation (the
    line says why); 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm agents show 42

        edgeswarm agents show 42 --gateway gw.example:{port} --ca ca.crt --json
    """
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


register_module_commands(agents_app)
register_rollout_commands(agents_app)
