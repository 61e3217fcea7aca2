"""QUIC adapter: connect to a gateway, or serve; the seam between the QUIC libraries
and edgeswarm.

It moves bytes between a QUIC connection's session stream and a
``StreamHandler`` and does nothing else: protocol logic lives in the sans-I/O
``edgeswarm.wire.Session`` that handlers own. The client opens one
bidirectional stream (the session stream); the server binds the first
client-initiated bidirectional stream of each connection to a new handler.
QUIC DATAGRAM frames, when both ends negotiated them, reach a handler's
optional ``datagram_received``.

Two libraries can carry it (``stack=``): ``aioquic``, the pure-Python
reference, and ``qh3``, its fork with a Rust packet core (see ``stacks.py``);
I/O and batching are ours (``link.py``, ``endpoint.py``), tickets in
``tickets.py``. What a handler sees (link, handler protocol, settings,
errors) is ``api.py``, re-exported here.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeswarm.wire import ALPN

from .admission import AdmissionStats
from .api import (
    DEFAULT_PORT,
    INTERNET_DATAGRAM_SIZE,
    AdmissionLimits,
    CertificateFileError,
    ConnectTimeoutError,
    HandlerFactory,
    HandshakeError,
    ListenError,
    SessionLink,
    StreamHandler,
    TransportSettings,
)
from .endpoint import ClientEndpoint
from .link import QuicLink, quic_clock
from .server_endpoint import ServerEndpoint
from .stacks import DEFAULT_STACK, STACKS, load_stack
from .tickets import ServerTicketStore, TicketStore

__all__ = [
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_PORT",
    "DEFAULT_STACK",
    "STACKS",
    "AdmissionLimits",
    "AdmissionStats",
    "CertificateFileError",
    "ConnectTimeoutError",
    "HandshakeError",
    "ListenError",
    "QuicListener",
    "SessionLink",
    "StreamHandler",
    "TicketStore",
    "TransportSettings",
    "connect",
    "default_stack",
    "serve",
]

DEFAULT_IDLE_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0
STACK_ENV = "EDGESWARM_QUIC"
CLOSE_WAIT_S = 1.0


def default_stack() -> str:
    """``$EDGESWARM_QUIC`` or ``DEFAULT_STACK``; for CLI code, which may read the environment."""
    return os.environ.get(STACK_ENV, DEFAULT_STACK)


@dataclass
class QuicListener:
    """A running QUIC server."""

    host: str
    """Address the server is bound to."""
    port: int
    """UDP port the server is bound to (the real one when 0 was asked for)."""
    _endpoint: ServerEndpoint
    stack: str = DEFAULT_STACK
    """The QUIC library serving."""

    @property
    def connections(self) -> int:
        """Open QUIC connections."""
        return len(set(self._endpoint.links.values()))

    @property
    def unauthenticated(self) -> int:
        """Connections whose peer has not authenticated yet."""
        return self._endpoint.admission.unauthenticated

    @property
    def admission_stats(self) -> AdmissionStats:
        """Counters of the pre-auth budget (``admission.py``)."""
        return self._endpoint.admission_stats

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._endpoint.shutdown()


AIOQUIC_MAX_DATAGRAM_SIZE = 16383
"""aioquic writes STREAM frame lengths in 2 bytes: larger packets break it."""


def _configuration(
    stack: str, *, is_client: bool, idle_timeout: float, settings: TransportSettings
) -> Any:
    if stack == "aioquic" and settings.max_datagram_size > AIOQUIC_MAX_DATAGRAM_SIZE:
        raise ValueError(
            f"aioquic cannot send datagrams over {AIOQUIC_MAX_DATAGRAM_SIZE} bytes "
            f"(asked for {settings.max_datagram_size})"
        )
    configuration = load_stack(stack).configuration_class(
        alpn_protocols=[ALPN],
        is_client=is_client,
        idle_timeout=idle_timeout,
        max_data=settings.flow_control_window,
        max_stream_data=settings.flow_control_window,
        max_datagram_size=settings.max_datagram_size,
        max_datagram_frame_size=settings.max_datagram_frame_size,
    )
    if load_stack(stack).pmtu_probing:
        # Above the Internet-safe size, find what the path carries (qh3 probes up to
        # max_datagram_size and falls back when big packets are lost); at it, stay there.
        configuration.probe_datagram_size = settings.max_datagram_size > INTERNET_DATAGRAM_SIZE
    return configuration


def _allows_early_data(ticket: Any) -> bool:
    """Whether a library ``SessionTicket`` lets the client send 0-RTT data."""
    return ticket is not None and bool(getattr(ticket, "max_early_data_size", None))


def _bind(host: str, port: int) -> socket.socket:
    """A UDP socket bound to ``host:port``; ``ListenError`` saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ListenError(f"cannot listen on UDP {where}: {why}") from None
    return sock


def _check_ca_file(ca_file: Path) -> None:
    """``CertificateFileError`` naming ``ca_file`` unless it holds a PEM certificate.

    The QUIC libraries read it only when the handshake starts, and then fail
    without naming it (qh3 drops the connection, the client waits its timeout).
    """
    from cryptography import x509

    try:
        data = ca_file.read_bytes()
    except OSError as exc:
        raise CertificateFileError(
            f"cannot read the CA certificate {ca_file}: {exc.strerror or exc}"
        ) from None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateFileError(
            f"{ca_file} holds no PEM certificate (give the gateway's ca.crt)"
        ) from None


async def serve(
    host: str,
    port: int,
    *,
    cert: Path,
    key: Path,
    handler_factory: HandlerFactory,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    stack: str = DEFAULT_STACK,
    settings: TransportSettings | None = None,
    admission: AdmissionLimits | None = None,
) -> QuicListener:
    """Listen for QUIC connections; each session stream gets a new handler.

    Session tickets are issued and redeemed from an in-memory store, so a
    client with a ``TicketStore`` resumes (and may send 0-RTT data). Peers
    that have not authenticated (``SessionLink.mark_authenticated``) are held
    to ``admission`` (caps, Retry, deadline: ``admission.py``).
    """
    settings = settings or TransportSettings()
    quic_stack = load_stack(stack)
    configuration = _configuration(
        stack, is_client=False, idle_timeout=idle_timeout, settings=settings
    )
    try:
        configuration.load_cert_chain(str(cert), str(key))
    except Exception as exc:  # each library raises its own types (qh3: TypeError, ...)
        what = str(exc) or type(exc).__name__
        raise CertificateFileError(
            f"cannot load the TLS certificate {cert} with its key {key}: {what}"
        ) from exc
    sock = _bind(host, port)
    endpoint = ServerEndpoint(
        sock,
        settings,
        stack=quic_stack,
        configuration=configuration,
        handler_factory=handler_factory,
        tickets=ServerTicketStore(),
        admission=admission or AdmissionLimits(),
    )
    bound = sock.getsockname()
    return QuicListener(host=host, port=int(bound[1]), _endpoint=endpoint, stack=stack)


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    *,
    ca_file: Path,
    handler: StreamHandler,
    server_name: str | None = None,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
    stack: str = DEFAULT_STACK,
    settings: TransportSettings | None = None,
    tickets: TicketStore | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    early_data: bool = False,
) -> AsyncIterator[QuicLink]:
    """Connect, verify the gateway against ``ca_file``, open the session stream.

    Raises ``CertificateFileError`` when ``ca_file`` cannot be read or holds no
    certificate, ``HandshakeError`` (a ``ConnectionError``) when the gateway
    refuses, closes or presents a certificate ``ca_file`` does not sign, and
    ``ConnectTimeoutError`` when no handshake completes within ``connect_timeout``.
    With ``tickets`` the connection resumes the last session with the same
    gateway (``link.resumed``) and stores the new ticket.

    With ``early_data`` as well, and a stored ticket that allows it, the
    session stream opens before the handshake completes: what the handler
    sends from ``connection_made`` (the HELLO) leaves as 0-RTT data, one round
    trip earlier. Only send replayable frames that way (a HELLO is: the
    gateway's fresh CHALLENGE still has to be signed). If the gateway refuses
    the early data (it forgot the ticket, e.g. after a restart) the library
    sends the same bytes again after the handshake (``link.early_data_accepted``
    tells which happened).
    """
    settings = settings or TransportSettings()
    quic_stack = load_stack(stack)
    configuration = _configuration(
        stack, is_client=True, idle_timeout=idle_timeout, settings=settings
    )
    _check_ca_file(ca_file)
    configuration.load_verify_locations(cafile=str(ca_file))
    configuration.server_name = server_name or host
    ticket_key = (stack, host, port, configuration.server_name)
    ticket_handler = None
    if tickets is not None:
        configuration.session_ticket = tickets.get(ticket_key)

        def ticket_handler(ticket: Any) -> None:
            tickets.put(ticket_key, ticket)

    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    endpoint = ClientEndpoint(sock, settings)
    zero_rtt = False
    try:
        sock.connect(addr)
        quic = quic_stack.connection_class(
            configuration=configuration, session_ticket_handler=ticket_handler
        )
        link = QuicLink(
            stack=quic_stack,
            quic=quic,
            endpoint=endpoint,
            handler=handler,
            is_server=False,
            max_datagram_size=settings.max_datagram_size,
        )
        link.set_peer(f"{host}:{port}")
        endpoint.link = link
        link.connect(addr, quic_clock())
        zero_rtt = early_data and _allows_early_data(configuration.session_ticket)
        if zero_rtt:
            link.open_session_stream()
        try:
            async with asyncio.timeout(connect_timeout):
                await link.handshake
        except TimeoutError:
            link.close_connection(reason="connect timeout")
            endpoint.flush()
            raise ConnectTimeoutError(
                f"no QUIC handshake with {host}:{port} within {connect_timeout:g} s"
                " (is a gateway listening there, and does UDP reach it?)"
            ) from None
    except BaseException as error:
        if zero_rtt:  # the handler saw connection_made: tell it the connection is gone
            if not link.handshake.done():
                link.handshake.cancel()  # nobody awaits it any more
            link.mark_lost(f"handshake failed: {error!r}")
        endpoint.close()
        raise
    try:
        if not zero_rtt:
            link.open_session_stream()
        yield link
    finally:
        link.close_connection()
        endpoint.flush()
        with suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_WAIT_S):
                await link.closed.wait()
        link.mark_lost("connection closed")
        endpoint.close()
