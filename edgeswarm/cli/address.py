"""``host:port`` arguments, and the gateway address a client command connects to."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from edgeswarm.client.address import DEFAULT_HOST, GatewayAddress, split_host_port
from edgeswarm.transport.api import DEFAULT_PORT

DEFAULT_GATEWAY = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
"""``--gateway`` when it is not given."""


def parse_address(value: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``host`` -> (host, port); a usage error otherwise."""
    try:
        return split_host_port(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def gateway_address(
    value: str, *, ca: Path, server_name: str | None, stack: str, timeout: float | None = None
) -> GatewayAddress:
    """The gateway ``--gateway VALUE --ca CA [--server-name] [--stack]`` names."""
    host, port = parse_address(value)
    address = GatewayAddress(host=host, port=port, ca_file=ca, server_name=server_name, stack=stack)
    return address if timeout is None else dataclasses.replace(address, connect_timeout_s=timeout)
