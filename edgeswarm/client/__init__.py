"""The client side of one session with a gateway: edge uplink, admin tool, peer gateway.

``GatewayClient`` drives one session (handshake, credit, acks, state frames);
``GatewayAddress`` says where a gateway is and how to trust it;
``open_session`` and ``Reconnect`` connect and reconnect with backoff; the
admin calls (``fetch_status``, ``watch_state``, ``fetch_state``) are what the
``edgeswarm`` CLI asks a gateway. Gateways and edges both build on this room
and never import each other.
"""

from .address import DEFAULT_HOST, GatewayAddress, split_host_port
from .admin import fetch_state, fetch_status, watch_state
from .errors import AuthRefusedError, RedirectedError, SessionEndedError
from .reconnect import Backoff, Reconnect, open_session
from .session import GatewayClient, StateHandler

__all__ = [
    "DEFAULT_HOST",
    "AuthRefusedError",
    "Backoff",
    "GatewayAddress",
    "GatewayClient",
    "Reconnect",
    "RedirectedError",
    "SessionEndedError",
    "StateHandler",
    "fetch_state",
    "fetch_status",
    "open_session",
    "split_host_port",
    "watch_state",
]
