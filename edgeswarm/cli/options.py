"""Checks and exits shared by the CLI commands."""

from __future__ import annotations

from typing import NoReturn

import typer


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

    return choice(value or default_stack(), ("aioquic", "qh3"), "--stack")


def admin_logging() -> None:
    """One-shot admin commands (``status``, ``state``) say what failed in one ``error:``
    line; below ERROR the library's logs would only repeat it (before it, unformatted)."""
    from edgeswarm.telemetry import configure_logging

    configure_logging("ERROR", process="admin")


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
