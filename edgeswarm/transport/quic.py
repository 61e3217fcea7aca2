"""QUIC adapter: the one module that imports the QUIC library.

It moves bytes between a QUIC connection's session stream and a
``StreamHandler`` and does nothing else: protocol logic lives in the sans-I/O
``edgeswarm.wire.Session`` that handlers own. The client opens one
bidirectional stream (the session stream); the server binds the first
client-initiated bidirectional stream of each connection to a new handler.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    QuicEvent,
    StreamDataReceived,
    StreamReset,
)

from edgeswarm.wire import ALPN

log = logging.getLogger("edgeswarm.transport")

DEFAULT_IDLE_TIMEOUT_S = 30.0
FLOW_CONTROL_WINDOW = 16 * 1024 * 1024


class SessionLink(Protocol):
    """What a handler may do with its connection."""

    def send(self, data: bytes, *, end_stream: bool = False) -> None:
        """Queue ``data`` on the session stream and transmit."""

    def close_connection(self, *, error_code: int = 0, reason: str = "") -> None:
        """Close the QUIC connection."""

    @property
    def peer(self) -> str:
        """The remote address, ``host:port``."""


class StreamHandler(Protocol):
    """Receives the bytes of one session stream."""

    def connection_made(self, link: SessionLink) -> None:
        """The session stream exists; ``link`` sends on it."""

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        """Bytes arrived on the session stream."""

    def connection_lost(self, reason: str) -> None:
        """The QUIC connection is gone."""


HandlerFactory = Callable[[], StreamHandler]


class _SessionProtocol(QuicConnectionProtocol):
    """Binds one QUIC connection's session stream to one handler."""

    def __init__(self, *args: Any, handler: StreamHandler, is_server: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handler = handler
        self._is_server = is_server
        self._stream_id: int | None = None
        self._lost = False
        self._peer = "?"

    # SessionLink
    @property
    def peer(self) -> str:
        return self._peer

    def send(self, data: bytes, *, end_stream: bool = False) -> None:
        if self._stream_id is None or self._lost:
            return
        self._quic.send_stream_data(self._stream_id, data, end_stream)
        self.transmit()

    def close_connection(self, *, error_code: int = 0, reason: str = "") -> None:
        if not self._lost:
            self._quic.close(error_code=error_code, reason_phrase=reason)
            self.transmit()

    # client side
    def set_peer(self, peer: str) -> None:
        self._peer = peer

    def open_session_stream(self) -> None:
        self._stream_id = self._quic.get_next_available_stream_id()
        self._handler.connection_made(self)

    # QuicConnectionProtocol
    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self._peer == "?":
            self._peer = f"{addr[0]}:{addr[1]}"
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            if self._stream_id is None and self._is_server:
                self._stream_id = event.stream_id
                self._handler.connection_made(self)
            if event.stream_id == self._stream_id:
                self._handler.data_received(event.data, end_stream=event.end_stream)
            else:
                log.warning(
                    "data on a second stream ignored",
                    extra={"stream_id": event.stream_id, "peer": self._peer},
                )
        elif isinstance(event, StreamReset) and event.stream_id == self._stream_id:
            self._handler.data_received(b"", end_stream=True)
        elif isinstance(event, ConnectionTerminated):
            self._mark_lost(event.reason_phrase or f"error {event.error_code}")

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._mark_lost(str(exc) if exc else "connection lost")

    def _mark_lost(self, reason: str) -> None:
        if not self._lost:
            self._lost = True
            self._handler.connection_lost(reason)


@dataclass
class QuicListener:
    """A running QUIC server."""

    host: str
    """Address the server is bound to."""
    port: int
    """UDP port the server is bound to (the real one when 0 was asked for)."""
    _server: QuicServer

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._server.close()


def _configuration(*, is_client: bool, idle_timeout: float) -> QuicConfiguration:
    return QuicConfiguration(
        alpn_protocols=[ALPN],
        is_client=is_client,
        idle_timeout=idle_timeout,
        max_data=FLOW_CONTROL_WINDOW,
        max_stream_data=FLOW_CONTROL_WINDOW,
    )


async def serve(
    host: str,
    port: int,
    *,
    cert: Path,
    key: Path,
    handler_factory: HandlerFactory,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
) -> QuicListener:
    """Listen for QUIC connections; each session stream gets a new handler."""
    configuration = _configuration(is_client=False, idle_timeout=idle_timeout)
    configuration.load_cert_chain(str(cert), str(key))

    def create_protocol(*args: Any, **kwargs: Any) -> _SessionProtocol:
        return _SessionProtocol(*args, handler=handler_factory(), is_server=True, **kwargs)

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, port))
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: QuicServer(configuration=configuration, create_protocol=create_protocol),
        sock=sock,
    )
    bound = sock.getsockname()
    return QuicListener(host=host, port=int(bound[1]), _server=protocol)


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    *,
    ca_file: Path,
    handler: StreamHandler,
    server_name: str | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
) -> AsyncIterator[SessionLink]:
    """Connect, verify the gateway against ``ca_file``, open the session stream."""
    from aioquic.asyncio.client import connect as quic_connect

    configuration = _configuration(is_client=True, idle_timeout=idle_timeout)
    configuration.load_verify_locations(cafile=str(ca_file))
    configuration.server_name = server_name or host

    def create_protocol(*args: Any, **kwargs: Any) -> _SessionProtocol:
        return _SessionProtocol(*args, handler=handler, is_server=False, **kwargs)

    async with quic_connect(
        host, port, configuration=configuration, create_protocol=create_protocol
    ) as protocol:
        assert isinstance(protocol, _SessionProtocol)
        protocol.set_peer(f"{host}:{port}")
        protocol.open_session_stream()
        yield protocol
