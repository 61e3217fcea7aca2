"""``edgeswarm state get|watch [KEY]``: the swarm state as a gateway holds it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from edgeswarm.client.admin import DEFAULT_ADMIN_ID, DEFAULT_TIMEOUT_S

from .address import DEFAULT_GATEWAY, gateway_address
from .options import DEFAULT_ADMIN_KEY, admin_logging, exits_on_error, quic_stack

state_app = typer.Typer(
    name="state",
    help="Read the shared swarm state (CRDT counters, sets, flags) of a gateway.",
    no_args_is_help=True,
)

Key = Annotated[
    str | None,
    typer.Argument(metavar="KEY", help="A key (group/name) or a group; everything when left out."),
]
Ca = Annotated[Path, typer.Option(help="CA certificate of the gateway (pinned).")]
GatewayAddr = Annotated[str, typer.Option("--gateway", help="Gateway host:port.")]
ServerName = Annotated[str | None, typer.Option(help="Name in the certificate.")]
AdminKey = Annotated[Path, typer.Option(help="Admin private key enrolled with role admin.")]
AdminId = Annotated[str, typer.Option(help="Peer id the admin key is enrolled as.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (one object per snapshot).")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the gateway.")]


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


def _connection(
    ca: Path, gateway_addr: str, key: Path, admin_id: str, server_name: str | None, timeout: float
) -> dict[str, Any]:
    """The keyword arguments of ``watch_state`` that say where and who."""
    from edgeswarm.identity.keys import KeyPair

    admin_logging()
    address = gateway_address(
        gateway_addr, ca=ca, server_name=server_name, stack=quic_stack(None), timeout=timeout
    )
    with exits_on_error():
        pair = KeyPair.load(key)
    return {"gateway": address, "key": pair, "admin_id": admin_id, "timeout": timeout}


def _run(gateway_addr: str, coroutine: Any) -> int:
    with exits_on_error(f"cannot read state from gateway {gateway_addr}"):
        shown = int(asyncio.run(coroutine))
    return shown


@state_app.command("get")
def get(
    ca: Ca,
    key_filter: Key = None,
    gateway_addr: GatewayAddr = DEFAULT_GATEWAY,
    server_name: ServerName = None,
    key: AdminKey = DEFAULT_ADMIN_KEY,
    admin_id: AdminId = DEFAULT_ADMIN_ID,
    as_json: AsJson = False,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
) -> None:
    """Print the swarm state: every counter (total), set (members) and flag, or KEY's."""
    from edgeswarm.client.admin import watch_state

    def show(gateway_id: str, snapshot: dict[str, dict[str, Any]]) -> bool:
        chosen = select(snapshot, key_filter)
        if as_json:
            typer.echo(json.dumps(_record(gateway_id, chosen)))
        else:
            Console().print(_table(gateway_id, chosen, ""))
        return True

    connection = _connection(ca, gateway_addr, key, admin_id, server_name, timeout)
    _run(gateway_addr, watch_state(**connection, on_snapshot=show, count=1))


@state_app.command("watch")
def watch(
    ca: Ca,
    key_filter: Key = None,
    gateway_addr: GatewayAddr = DEFAULT_GATEWAY,
    server_name: ServerName = None,
    key: AdminKey = DEFAULT_ADMIN_KEY,
    admin_id: AdminId = DEFAULT_ADMIN_ID,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many snapshots.")
    ] = None,
    duration: Annotated[float, typer.Option(min=0, help="Stop after SECONDS.")] = 60.0,
    as_json: AsJson = False,
    timeout: Timeout = DEFAULT_TIMEOUT_S,
) -> None:
    """Print the swarm state, then again after every change of it (or of KEY).

    Bounded: stops after --count snapshots or --duration seconds (60 by default).
    With --json, one JSON object per snapshot, each with `seq` and `elapsed_s`.
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

    connection = _connection(ca, gateway_addr, key, admin_id, server_name, timeout)
    _run(gateway_addr, watch_state(**connection, on_snapshot=show, duration=duration, count=None))
    if not as_json:
        console.print(f"[dim]{shown} snapshot(s) in {time.monotonic() - started:.1f} s[/dim]")
