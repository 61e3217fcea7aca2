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


def split_host_port(value: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``host`` or ``[v6]`` -> (host, port).

    Raises ``ValueError`` naming ``value`` for a port that is not 0..65535.
    """
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
        raise ValueError(f"bad port in {value!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range in {value!r}")
    return host, number
