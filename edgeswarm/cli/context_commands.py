"""``edgeswarm context add|use|list|remove``: saved gateways (``contexts.py``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .address import parse_address
from .contexts import Context, load_config
from .exits import Usage, exits_on_error, fail
from .options import with_examples

context_app = typer.Typer(
    name="context",
    help="Saved gateways (address, CA, admin key) that status and state use by name.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="Name of the context.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _record(name: str, context: Context, current: str | None) -> dict[str, object]:
    return {"name": name, "current": name == current, **dataclasses.asdict(context)}


def _absolute(path: Path, option: str) -> str:
    if not path.is_file():
        raise Usage(f"{option}: no file {path}")
    return str(path.resolve())


@context_app.command("add")
@with_examples
def add(
    name: Name,
    gateway: Annotated[str, typer.Option(help="Gateway host:port.")],
    ca: Annotated[Path, typer.Option(help="The gateway's CA certificate (ca.crt).")],
    key: Annotated[Path, typer.Option(help="Admin private key enrolled with role admin.")],
    admin_id: Annotated[
        str | None, typer.Option(help="Peer id the admin key is enrolled as (default: admin).")
    ] = None,
    server_name: Annotated[
        str | None, typer.Option(help="Name in the gateway's certificate (default: host).")
    ] = None,
    use: Annotated[
        bool, typer.Option(help="Make it the current context (the first one always is).")
    ] = False,
    replace: Annotated[bool, typer.Option(help="Overwrite a context of that name.")] = False,
    as_json: AsJson = False,
) -> None:
    """Save a gateway under NAME (paths are stored absolute).

    Examples:

        edgeswarm context add prod --gateway gw.example:{port} --ca ca.crt --key admin.key

        edgeswarm context add lab --gateway 10.0.0.5:{port} --ca lab-ca.crt --key lab.key --use
    """
    with exits_on_error():
        parse_address(gateway, "--gateway")
        context = Context(
            gateway=gateway,
            ca=_absolute(ca, "--ca"),
            key=_absolute(key, "--key"),
            admin_id=admin_id,
            server_name=server_name,
        )
        config = load_config()
        if name in config.contexts and not replace:
            raise Usage(f"context {name!r} exists in {config.path}; give --replace to overwrite")
        config.contexts[name] = context
        if use or config.current is None:
            config.current = name
        config.save()
    if as_json:
        typer.echo(json.dumps(_record(name, context, config.current)))
    else:
        now = " (current)" if config.current == name else ""
        typer.echo(f"context {name} saved in {config.path}{now}")


@context_app.command("use")
def use(name: Name, as_json: AsJson = False) -> None:
    """Make NAME the current context.

    Examples:

        edgeswarm context use prod
    """
    with exits_on_error():
        config = load_config()
        if name not in config.contexts:
            config.get(name)  # raises the usage error that lists the contexts
        config.current = name
        config.save()
    if as_json:
        typer.echo(json.dumps(_record(name, config.contexts[name], name)))
    else:
        typer.echo(f"current context: {name}")


@context_app.command("list")
def list_contexts(as_json: AsJson = False) -> None:
    """The saved contexts; the current one is marked.

    Examples:

        edgeswarm context list

        edgeswarm context list --json | jq -r '.[] | select(.current) | .name'
    """
    with exits_on_error():
        config = load_config()
    records = [_record(n, c, config.current) for n, c in sorted(config.contexts.items())]
    if as_json:
        typer.echo(json.dumps(records))
        return
    table = Table(title=f"contexts in {config.path}")
    for column in ("", "name", "gateway", "ca", "key", "admin id"):
        table.add_column(column)
    for record in records:
        table.add_row(
            "*" if record["current"] else "",
            str(record["name"]),
            str(record["gateway"]),
            str(record["ca"]),
            str(record["key"]),
            str(record["admin_id"] or ""),
        )
    Console().print(table)


@context_app.command("remove")
def remove(name: Name, as_json: AsJson = False) -> None:
    """Forget NAME (when it was current, no context is current afterwards).

    Exit status 1 when there is no such context.

    Examples:

        edgeswarm context remove lab
    """
    with exits_on_error():
        config = load_config()
        context = config.contexts.pop(name, None)
        if context is None:
            fail(f"no context {name!r} in {config.path}")
        if config.current == name:
            config.current = None
        config.save()
    if as_json:
        typer.echo(json.dumps({"removed": name, "current": config.current}))
    else:
        typer.echo(f"removed context {name}")
