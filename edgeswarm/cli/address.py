"""``host:port`` options, and the gateway address a client command connects to."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgeswarm.client.address import DEFAULT_HOST, GatewayAddress, split_host_port
from edgeswarm.transport.api import DEFAULT_PORT

from .exits import Usage

DEFAULT_GATEWAY = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
"""``--gateway`` when neither it nor a context gives one."""


def parse_address(value: str, option: str, *, listen: bool = False) -> tuple[str, int]:
    """``option``'s ``host:port`` or ``[v6]:port`` -> (host, port); a :class:`Usage` error
    naming the option otherwise (port 0, "pick one", only for addresses to ``listen`` on)."""
    try:
        return split_host_port(value, allow_port_zero=listen)
    except ValueError as exc:
        raise Usage(f"{option} {exc}") from None


def gateway_address(
    value: str,
    *,
    ca: Path,
    server_name: str | None,
    stack: str,
    timeout: float | None = None,
    option: str = "--gateway",
) -> GatewayAddress:
    """The gateway ``--gateway VALUE --ca CA [--server-name] [--stack]`` names."""
    host, port = parse_address(value, option)
    address = GatewayAddress(host=host, port=port, ca_file=ca, server_name=server_name, stack=stack)
    return address if timeout is None else dataclasses.replace(address, connect_timeout_s=timeout)
