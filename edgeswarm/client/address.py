"""Where a gateway listens and how to trust it: the one address type of every client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeswarm.transport.api import DEFAULT_PORT
from edgeswarm.transport.stacks import DEFAULT_STACK

__all__ = ["DEFAULT_HOST", "GatewayAddress", "split_host_port"]

DEFAULT_HOST = "127.0.0.1"
"""Host a client connects to unless told otherwise."""


@dataclass(frozen=True, kw_only=True)
class GatewayAddress:
    """What a client session needs to reach one gateway (edge uplink, admin, peer gateway)."""

    host: str = DEFAULT_HOST
    """Host name or address of the gateway."""
    port: int = DEFAULT_PORT
    """Its UDP port."""
    ca_file: Path
    """CA certificate (or bundle) the gateway's certificate must chain to (pinned)."""
    server_name: str | None = None
    """Name to verify in the gateway's certificate; ``host`` if None."""
    stack: str = DEFAULT_STACK
    """QUIC implementation: ``aioquic`` or ``qh3``."""
    connect_timeout_s: float = 3.0
    """Longest wait for the QUIC handshake, and then for WELCOME."""

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def split_host_port(value: str, *, allow_port_zero: bool = False) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port).

    Strict, because a loose reading connects somewhere else quietly: raises
    ``ValueError`` saying what to write for a scheme or a path
    (``https://gw:PORT``), a missing port, an IPv6 address without brackets,
    an empty host, and a port that is not 1..65535 (0 too with
    ``allow_port_zero``: "pick one", for addresses to listen on).
    """
    example = f"gw.example:{DEFAULT_PORT}"
    if "://" in value:
        raise ValueError(f"{value!r}: give host:port without a scheme, e.g. {example}")
    if "/" in value:
        raise ValueError(f"{value!r}: give host:port without a path, e.g. {example}")
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{value!r}: give [IPv6]:port, e.g. [::1]:{DEFAULT_PORT}")
        port = rest[1:]
    elif value.count(":") > 1:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:{DEFAULT_PORT}")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        raise ValueError(
            f"{value!r} has no port: give host:port (a gateway listens on {DEFAULT_PORT}"
            f" unless told otherwise), e.g. {value or 'gw.example'}:{DEFAULT_PORT}"
        )
    if not host:
        raise ValueError(f"{value!r} has no host: give host:port, e.g. {example}")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"{value!r}: the port must be a number, e.g. {example}") from None
    lowest = 0 if allow_port_zero else 1
    if not lowest <= number <= 65535:
        raise ValueError(f"{value!r}: the port must be in {lowest}..65535")
    return host, number
