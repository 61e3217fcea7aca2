"""The gateway an admin command talks to: its options, a context, or the defaults.

Every admin command (``status``, ``state``, ``edges``, ``shards``, ``agents``) takes
the same connection options, declared once here and given to a command by
:func:`gateway_options`; each one left out comes from the context (``--context``,
``$EDGESWARM_CONTEXT``, else the current one), else from the built-in default. The
files are checked before anything connects, so a wrong path is a usage error
naming where it came from.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import DEFAULT_ADMIN_ID, DEFAULT_TIMEOUT_S
from edgeswarm.identity.keys import KeyPair
from edgeswarm.telemetry import configure_logging

from .address import DEFAULT_GATEWAY, gateway_address
from .contexts import CONTEXT_ENV, load_config
from .exits import Usage, exits_on_error
from .options import DEFAULT_ADMIN_KEY, quic_stack

__all__ = [
    "AdminId",
    "AdminKey",
    "AdminTarget",
    "Ca",
    "ContextName",
    "GatewayAddr",
    "ServerName",
    "Target",
    "Timeout",
    "admin_target",
    "gateway_options",
]

R = TypeVar("R")

ContextName = Annotated[
    str | None,
    typer.Option(
        "--context",
        envvar=CONTEXT_ENV,
        help="Saved context to take the connection from (default: the current one).",
    ),
]
Ca = Annotated[
    Path | None, typer.Option(help="CA certificate of the gateway (default: the context's).")
]
GatewayAddr = Annotated[
    str | None,
    typer.Option(
        "--gateway", help=f"Gateway host:port (default: the context's, {DEFAULT_GATEWAY})."
    ),
]
ServerName = Annotated[str | None, typer.Option(help="Name in the gateway's certificate.")]
AdminKey = Annotated[
    Path | None,
    typer.Option(help=f"Admin private key (default: the context's, {DEFAULT_ADMIN_KEY})."),
]
AdminId = Annotated[
    str | None,
    typer.Option(help=f"Peer id the admin key is enrolled as (default: {DEFAULT_ADMIN_ID})."),
]
Timeout = Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the gateway's answer.")]


_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("context", ContextName, None),
    ("gateway_addr", GatewayAddr, None),
    ("ca", Ca, None),
    ("key", AdminKey, None),
    ("admin_id", AdminId, None),
    ("server_name", ServerName, None),
    ("timeout", Timeout, DEFAULT_TIMEOUT_S),
)
"""The connection options of every admin command: parameter, type with its option, default."""


@dataclass(frozen=True)
class Target:
    """Which gateway a command asks, and as whom: the connection options as given."""

    context: str | None = None
    gateway_addr: str | None = None
    ca: Path | None = None
    key: Path | None = None
    admin_id: str | None = None
    server_name: str | None = None
    timeout: float = DEFAULT_TIMEOUT_S

    def resolve(self) -> AdminTarget:
        """Against the context and the defaults: :func:`admin_target`."""
        return admin_target(
            context=self.context,
            gateway=self.gateway_addr,
            ca=self.ca,
            key=self.key,
            admin_id=self.admin_id,
            server_name=self.server_name,
            timeout=self.timeout,
        )

    def resolve_for(self, process: str) -> AdminTarget:
        """What a command about to reach the gateway does first: logging of ``process`` at
        ERROR (its one error line says it all), then :meth:`resolve`, a wrong option or
        context exiting with that line (exit code 2)."""
        configure_logging("ERROR", process=process)
        with exits_on_error():
            return self.resolve()


def gateway_options(command: Callable[..., R]) -> Callable[..., R]:
    """Give an admin command the connection options (``--context``, ``--gateway``, ``--ca``,
    ``--key``, ``--admin-id``, ``--server-name``, ``--timeout``), declared once.

    The command takes ``target: Target``; the signature Typer reads has the seven options
    in that parameter's place, and the command is called with them as one ``Target``."""
    signature = inspect.signature(command, eval_str=True)
    if "target" not in signature.parameters:
        raise TypeError(f"{command.__name__} takes no 'target' parameter for the options")
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name != "target":
            parameters.append(parameter)
            continue
        parameters += [
            inspect.Parameter(name, parameter.kind, annotation=annotation, default=default)
            for name, annotation, default in _OPTIONS
        ]

    @functools.wraps(command)
    def with_target(*args: Any, **kwargs: Any) -> R:
        options = {name: kwargs.pop(name) for name, _, _ in _OPTIONS if name in kwargs}
        return command(*args, target=Target(**options), **kwargs)

    cli_signature = signature.replace(parameters=parameters)
    with_target.__signature__ = cli_signature  # type: ignore[attr-defined]
    with_target.__annotations__ = {p.name: p.annotation for p in parameters} | {
        "return": signature.return_annotation
    }
    return with_target


@dataclass(frozen=True)
class AdminTarget:
    """Where an admin command connects, and as whom."""

    address: GatewayAddress
    key: KeyPair
    admin_id: str
    context: str | None
    """The context the values came from, if any."""


def admin_target(
    *,
    context: str | None,
    gateway: str | None,
    ca: Path | None,
    key: Path | None,
    admin_id: str | None,
    server_name: str | None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> AdminTarget:
    """Resolve the options against the context; raise :class:`Usage` naming the option
    or context for a missing CA, a file that does not exist, or a bad address.
    A key file that exists but cannot be loaded raises ``KeyFileError``."""
    chosen = load_config().get(context)
    name, saved = chosen if chosen is not None else (None, None)
    source = f"context {name!r}" if name else "default"

    def saved_value(attribute: str) -> str | None:
        return None if saved is None else getattr(saved, attribute)

    address = gateway if gateway is not None else saved_value("gateway")
    ca_text = str(ca) if ca is not None else saved_value("ca")
    if ca_text is None:
        raise Usage(
            "give --ca (the gateway's ca.crt), or save it in a context"
            " (`edgeswarm context add NAME --gateway HOST:PORT --ca CA --key KEY`)"
        )
    ca_path, ca_from = Path(ca_text), "--ca" if ca is not None else f"{source}'s ca"
    if not ca_path.is_file():
        raise Usage(f"{ca_from}: no file {ca_path}")
    key_text = str(key) if key is not None else saved_value("key")
    key_path = Path(key_text) if key_text is not None else DEFAULT_ADMIN_KEY
    if not key_path.is_file():
        key_from = "--key" if key is not None else f"{source} key"
        raise Usage(
            f"{key_from}: no file {key_path} (create one with `edgeswarm keys init --key"
            f" {key_path}` and enroll it on the gateway with --role admin)"
        )
    target = gateway_address(
        address or DEFAULT_GATEWAY,
        ca=ca_path,
        server_name=server_name or saved_value("server_name"),
        stack=quic_stack(None),
        timeout=timeout,
        option="--gateway" if gateway is not None else f"{source}'s gateway",
    )
    return AdminTarget(
        address=target,
        key=KeyPair.load(key_path),
        admin_id=admin_id or saved_value("admin_id") or DEFAULT_ADMIN_ID,
        context=name,
    )
