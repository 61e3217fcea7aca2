"""The gateway: QUIC server for edges and admins."""

from .config import GatewayConfig
from .server import Gateway

__all__ = ["Gateway", "GatewayConfig"]
