"""Checks, defaults and exits shared by the CLI commands."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from edgeswarm.errors import EdgeswarmError
from edgeswarm.transport.stacks import STACKS

DEFAULT_ADMIN_KEY = Path("var/admin.key")
"""``--key`` of the admin commands (``status``, ``state``) when it is not given."""

LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")]
"""``--log-level`` of the long-running commands."""
MetricsPort = Annotated[
    int, typer.Option("--metrics-port", help="Prometheus port; 0 picks a free one; -1 disables.")
]
"""``--metrics-port`` of the long-running commands (``metrics_port`` reads it)."""


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


def choice(value: str, allowed: tuple[str, ...], option: str) -> str:
    """``value`` if it is one of ``allowed``, else a usage error naming ``option``."""
    if value not in allowed:
        raise typer.BadParameter(f"{option} must be one of {', '.join(allowed)}")
    return value


def quic_stack(value: str | None) -> str:
    """``--stack``, defaulting to ``$EDGESWARM_QUIC`` or the built-in default."""
    from edgeswarm.transport.quic import default_stack

    return choice(value or default_stack(), STACKS, "--stack")


def admin_logging() -> None:
    """One-shot admin commands (``status``, ``state``) say what failed in one ``error:``
    line; below ERROR the library's logs would only repeat it (before it, unformatted)."""
    from edgeswarm.telemetry import configure_logging

    configure_logging("ERROR", process="admin")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def exits_on_error(context: str = "") -> Iterator[None]:
    """Turn an edgeswarm error or an OS error (a file, a socket, a timeout) raised in
    the block into one line, ``error: context: what happened``, and exit status 2.

    The one place the CLI catches the root of the error tree (``edgeswarm.errors``).
    """
    try:
        yield
    except (EdgeswarmError, OSError) as exc:
        what = str(exc) or type(exc).__name__
        fail(f"{context}: {what}" if context else what)
