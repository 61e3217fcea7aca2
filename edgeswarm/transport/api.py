"""What a session handler sees of the QUIC transport.

A handler (the gateway's connections, the client sessions, the benches)
implements :class:`StreamHandler` and is given a :class:`SessionLink`; it
imports this module and nothing else of the transport. Behind it, ``quic.py``
connects and serves, ``link.py`` drives one QUIC connection and
``endpoint.py`` moves the datagrams of one UDP socket.

Errors raised by ``quic.connect`` and ``quic.serve``::

    HandshakeError            refused, closed by the gateway, bad certificate
    │                         (an EdgeswarmError and a ConnectionError)
    └── ConnectTimeoutError   no handshake in time (also a TimeoutError)
    CertificateFileError      serve: the certificate or its key cannot be loaded;
                              connect: the CA file cannot be read or holds no certificate
    ListenError               serve: the UDP address cannot be bound (in use, not ours)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from edgeswarm.errors import EdgeswarmError

__all__ = [
    "DEFAULT_PORT",
    "INTERNET_DATAGRAM_SIZE",
    "AdmissionLimits",
    "CertificateFileError",
    "ConnectTimeoutError",
    "HandlerFactory",
    "HandshakeError",
    "ListenError",
    "SessionLink",
    "StreamHandler",
    "TransportSettings",
]

DEFAULT_PORT = 4433
"""UDP port a gateway listens on, and a client connects to, unless told otherwise."""
INTERNET_DATAGRAM_SIZE = 1350
"""Largest UDP payload that crosses the Internet's paths (tunnels, PPPoE) without discovery."""


@dataclass(frozen=True, kw_only=True)
class TransportSettings:
    """Tuning of the QUIC transport; the defaults are the measured safe winners."""

    max_datagram_size: int = INTERNET_DATAGRAM_SIZE
    """Largest UDP payload sent. 1350 (the default) is safe on the Internet. Larger: on qh3
    the connection starts at a safe size and probes upwards to this (packetization-layer
    path MTU discovery, RFC 8899 style), falling back when big packets are lost; on
    aioquic it is used as it is, so only on links known to carry it (aioquic breaks
    above ~16 KB)."""
    max_datagram_frame_size: int | None = 65535
    """Advertised DATAGRAM frame limit; None turns QUIC datagrams off (on aioquic, and on
    qh3 servers: qh3 2.1 clients advertise 65536 whatever this says)."""
    flow_control_window: int = 16 * 1024 * 1024
    """Connection and stream flow-control credit, bytes."""
    socket_buffer_bytes: int = 4 * 1024 * 1024
    """SO_RCVBUF/SO_SNDBUF asked for (the kernel caps it at rmem_max/wmem_max)."""
    recv_batch: int = 256
    """Most datagrams read per wakeup before processing them and transmitting."""
    segmentation_offload: bool = True
    """Linux UDP GSO/GRO: one ``sendmsg`` carries up to 64 equal-size datagrams and one
    read returns as many; turned off by itself where the kernel refuses it."""


@dataclass(frozen=True, kw_only=True)
class AdmissionLimits:
    """A server's budget for peers that have not authenticated yet (``admission.py``)."""

    max_unauthenticated: int = 1024
    """Unauthenticated connections at once, in all; beyond, new attempts are dropped."""
    max_unauthenticated_per_address: int = 64
    """Unauthenticated connections at once from one IP address."""
    retry_above: int = 128
    """Unauthenticated connections beyond which a new attempt must prove its address
    with a QUIC Retry round trip first (0: always)."""
    new_per_s: float = 100.0
    """New connections (TLS handshakes) accepted per second; beyond, an attempt without
    a Retry token gets a Retry, one with a token is dropped until the budget refills."""
    new_burst: int = 8
    """Burst of :attr:`new_per_s` (handshakes in one loop turn at most)."""
    deadline_s: float = 10.0
    """A connection still unauthenticated this long after its first packet is closed."""


class HandshakeError(EdgeswarmError, ConnectionError):
    """The QUIC handshake did not complete (refused, closed by the peer, bad certificate)."""


class ConnectTimeoutError(HandshakeError, TimeoutError):
    """No handshake within ``connect_timeout`` (gateway unreachable or silent)."""


class CertificateFileError(EdgeswarmError):
    """A server certificate or private key file, or a client's CA file, is missing,
    unreadable or damaged; the message names the file."""


class ListenError(EdgeswarmError, OSError):
    """The server cannot bind its UDP address (in use, or not an address of this host)."""


class SessionLink(Protocol):
    """What a handler may do with its connection."""

    def send(self, data: bytes, *, end_stream: bool = False) -> None:
        """Queue ``data`` on the session stream; it leaves at the end of this loop turn."""

    def transmit_now(self) -> None:
        """Send what is queued now rather than at the end of this loop turn.

        For data that waited on something else (a commit) and must not also
        wait for the loop's next socket read; within a read wakeup it changes
        nothing (the wakeup transmits once at its end).
        """

    @property
    def send_backlog(self) -> int | None:
        """Session-stream bytes queued and not sent once yet (congestion or flow control
        holds them); None when the QUIC library cannot tell (aioquic)."""

    async def wait_send_backlog(self, at_most: int) -> None:
        """Return once at most ``at_most`` bytes of the session stream wait to be sent
        (at once when the library cannot tell, or the connection is gone). A sender that
        waits for this before queuing more keeps its data in its own queue rather than
        deep in QUIC's, where everything sent later waits behind it."""

    def send_datagram(self, data: bytes) -> bool:
        """Send ``data`` as one QUIC DATAGRAM frame (unreliable, unordered).

        False when the peer did not negotiate datagrams or ``data`` is larger
        than ``max_datagram_payload``: the caller must use the stream.
        """

    @property
    def max_datagram_payload(self) -> int | None:
        """Largest ``send_datagram`` payload; None when datagrams are off."""

    def close_connection(self, *, error_code: int = 0, reason: str = "") -> None:
        """Close the QUIC connection."""

    def mark_authenticated(self) -> None:
        """The peer proved its identity: it leaves the server's pre-auth budget
        (``AdmissionLimits``) and its deadline. Nothing on a client."""

    @property
    def peer(self) -> str:
        """The remote address, ``host:port``."""

    @property
    def resumed(self) -> bool:
        """Whether the handshake resumed a TLS session from a ticket."""

    @property
    def early_data_accepted(self) -> bool:
        """Whether the peer accepted 0-RTT data."""


class StreamHandler(Protocol):
    """Receives the bytes of one session stream.

    A handler may also define ``datagram_received(data: bytes) -> None``; the
    adapter calls it (only if present) for each QUIC DATAGRAM frame that
    arrives after ``connection_made``.
    """

    def connection_made(self, link: SessionLink) -> None:
        """The session stream exists; ``link`` sends on it."""

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        """Bytes arrived on the session stream."""

    def connection_lost(self, reason: str) -> None:
        """The QUIC connection is gone."""


HandlerFactory = Callable[[], StreamHandler]
