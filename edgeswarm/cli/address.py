"""Parsing of ``host:port`` arguments."""

from __future__ import annotations

import typer


def parse_address(value: str, default_port: int = 4433) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` -> (host, port)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, str(default_port)
    try:
        number = int(port)
    except ValueError:
        raise typer.BadParameter(f"bad port in {value!r}") from None
    if not 0 <= number <= 65535:
        raise typer.BadParameter(f"port out of range in {value!r}")
    return host, number
