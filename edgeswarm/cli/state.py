"""``edgeswarm state get|watch [KEY]``: the swarm state as a gateway holds it."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .admin_target import Target, gateway_options
from .exits import exits_on_error, fail
from .options import with_examples

state_app = typer.Typer(
    name="state",
    help="Read the shared swarm state (CRDT counters, sets, flags) of a gateway.",
    no_args_is_help=True,
)

Key = Annotated[
    str | None,
    typer.Argument(metavar="KEY", help="A key (group/name) or a group; everything when left out."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (one object per snapshot).")]


def select(snapshot: dict[str, dict[str, Any]], key: str | None) -> dict[str, dict[str, Any]]:
    """The entries of ``snapshot`` whose key is ``key`` or lies in group ``key``."""
    if key is None:
        return snapshot
    prefix = key.rstrip("/") + "/"
    return {
        kind: {k: v for k, v in entries.items() if k == key or k.startswith(prefix)}
        for kind, entries in snapshot.items()
    }


def _record(gateway_id: str, snapshot: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"gateway_id": gateway_id, **snapshot}


def _table(gateway_id: str, snapshot: dict[str, dict[str, Any]], title: str) -> Table:
    table = Table(title=f"swarm state of {gateway_id}{title}")
    table.add_column("kind")
    table.add_column("key")
    table.add_column("value", justify="right")
    for key, value in snapshot["counters"].items():
        table.add_row("counter", key, f"{value:,}")
    for key, members in snapshot["sets"].items():
        shown = ", ".join(members[:8]) + (f", … (+{len(members) - 8})" if len(members) > 8 else "")
        table.add_row("set", key, f"{len(members)}: {shown}")
    for key, flag in snapshot["flags"].items():
        table.add_row("flag", key, "on" if flag else "off")
    return table


def _connection(target: Target) -> dict[str, Any]:
    """The keyword arguments of ``watch_state`` that say where and who."""
    resolved = target.resolve_for("state")
    return {
        "gateway": resolved.address,
        "key": resolved.key,
        "admin_id": resolved.admin_id,
        "timeout": target.timeout,
    }


def _run(connection: dict[str, Any], coroutine: Any) -> int:
    with exits_on_error(f"gateway {connection['gateway']}"):
        shown = int(asyncio.run(coroutine))
    return shown


def missing(snapshot: dict[str, dict[str, Any]], key: str | None) -> bool:
    """Whether ``key`` names nothing in ``snapshot`` (no such key and no such group)."""
    return key is not None and not any(select(snapshot, key).values())


@state_app.command("get")
@with_examples
@gateway_options
def get(
    key_filter: Key = None,
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """Print the swarm state: every counter (total), set (members) and flag, or KEY's.

    Exit status: 0 shown; 1 the gateway cannot be reached, or KEY names no key or group
    in the state; 2 a wrong option or context; 3 the gateway refused the admin key.

    Examples:

        edgeswarm state get --context prod

        edgeswarm state get fleet/steps --gateway gw.example:{port} --ca ca.crt --key admin.key

        edgeswarm state get swarm --json | jq .counters
    """
    from edgeswarm.client.admin import watch_state

    found: list[tuple[str, dict[str, dict[str, Any]]]] = []

    def keep(gateway_id: str, snapshot: dict[str, dict[str, Any]]) -> bool:
        found.append((gateway_id, snapshot))
        return True

    connection = _connection(target)
    _run(connection, watch_state(**connection, on_snapshot=keep, count=1))
    gateway_id, snapshot = found[0]
    if missing(snapshot, key_filter):
        keys = sorted({k.split("/")[0] for entries in snapshot.values() for k in entries})
        fail(
            f"no key or group {key_filter!r} in the swarm state of {gateway_id}"
            f" (groups: {', '.join(keys) or 'none'})"
        )
    chosen = select(snapshot, key_filter)
    if as_json:
        typer.echo(json.dumps(_record(gateway_id, chosen)))
    else:
        Console().print(_table(gateway_id, chosen, ""))


@state_app.command("watch")
@gateway_options
def watch(
    key_filter: Key = None,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many snapshots.")
    ] = None,
    duration: Annotated[float, typer.Option(min=0, help="Stop after SECONDS.")] = 60.0,
    as_json: AsJson = False,
    *,
    target: Target,
) -> None:
    """Print the swarm state, then again after every change of it (or of KEY).

    Bounded: stops after --count snapshots or --duration seconds (60 by default).
    With --json, one JSON object per snapshot, each with `seq` and `elapsed_s`.

    Examples:

        edgeswarm state watch fleet/steps --context prod --duration 30

        edgeswarm state watch swarm/anomalies --count 5 --json
    """
    from edgeswarm.client.admin import watch_state

    started = time.monotonic()
    console = Console()
    shown = 0
    last: dict[str, dict[str, Any]] | None = None

    def show(gateway_id: str, snapshot: dict[str, dict[str, Any]]) -> bool:
        nonlocal shown, last
        chosen = select(snapshot, key_filter)
        if chosen == last:
            return False  # a change elsewhere in the document
        last, shown = chosen, shown + 1
        elapsed = time.monotonic() - started
        if as_json:
            record = {"seq": shown, "elapsed_s": round(elapsed, 3), **_record(gateway_id, chosen)}
            typer.echo(json.dumps(record))
        else:
            limit = f"/{count}" if count is not None else ""
            title = f" — snapshot {shown}{limit}, {elapsed:.1f} of {duration:g} s"
            console.print(_table(gateway_id, chosen, title))
        return count is not None and shown >= count

    connection = _connection(target)
    _run(connection, watch_state(**connection, on_snapshot=show, duration=duration, count=None))
    if not as_json:
        console.print(f"[dim]{shown} snapshot(s) in {time.monotonic() - started:.1f} s[/dim]")
