"""Options and defaults shared by the CLI commands."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from edgeswarm.telemetry.logs import LogLevelName
from edgeswarm.transport.api import DEFAULT_PORT
from edgeswarm.transport.stacks import StackName

Command = TypeVar("Command", bound=Callable[..., Any])

DEFAULT_ADMIN_KEY = Path("var/admin.key")
"""``--key`` of the admin commands (``status``, ``state``) when neither it nor a context
gives one."""

LogLevel = Annotated[
    LogLevelName,
    typer.Option("--log-level", case_sensitive=False, help="Least severe level logged."),
]
"""``--log-level`` of the long-running commands."""
MetricsPort = Annotated[
    int,
    typer.Option(
        "--metrics-port",
        min=-1,
        max=65535,
        help="Port of /metrics, /healthz and /readyz; 0 picks a free one; -1 disables.",
    ),
]
"""``--metrics-port`` of the long-running commands (``metrics_port`` reads it)."""
MetricsHost = Annotated[
    str,
    typer.Option(
        "--metrics-host",
        help="Address /metrics, /healthz and /readyz listen on (0.0.0.0: every interface).",
    ),
]
"""``--metrics-host`` of the long-running commands."""
Stack = Annotated[
    StackName | None,
    typer.Option(envvar="EDGESWARM_QUIC", help="QUIC library (default: qh3)."),
]
"""``--stack`` of the commands that speak QUIC."""


def default(config: type[Any], name: str) -> Any:
    """The default of field ``name`` of the configuration dataclass ``config``.

    Every CLI default comes from here: the dataclass is the one place it is defined.
    """
    for field in dataclasses.fields(config):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
            raise ValueError(f"{config.__name__}.{name} has no default")
    raise ValueError(f"{config.__name__} has no field {name!r}")


def cli_port(port: int | None) -> int:
    """A ``metrics_port`` default as ``--metrics-port`` spells it (-1: disabled)."""
    return -1 if port is None else port


def metrics_port(value: int) -> int | None:
    """``--metrics-port``: negative disables the endpoint."""
    return None if value < 0 else value


def quic_stack(value: str | None) -> str:
    """``--stack``, defaulting to ``$EDGESWARM_QUIC`` or the built-in default."""
    from edgeswarm.transport.quic import default_stack

    return value or default_stack()


def with_examples(command: Command) -> Command:
    """Fill ``{port}`` in ``command``'s help (its examples) with the gateway's default port,
    which is written down once (``transport.api.DEFAULT_PORT``)."""
    command.__doc__ = (command.__doc__ or "").replace("{port}", str(DEFAULT_PORT))
    return command
