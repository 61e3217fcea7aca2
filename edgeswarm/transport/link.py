"""One QUIC connection and its session stream: the link a handler is given.

A :class:`QuicLink` drives one library ``QuicConnection`` (sans-I/O) and
binds its session stream to one ``StreamHandler``: datagrams in
(:meth:`QuicLink.receive`), events out to the handler
(:meth:`QuicLink.process_events`), packets out (:meth:`QuicLink.transmit`)
and the connection's timer. The UDP socket it rides on is a
:class:`LinkEndpoint` (``endpoint.py``), which decides when to transmit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from .api import HandshakeError, StreamHandler
from .stacks import (
    EventKind,
    QuicStack,
    datagrams_to_send,
    path_datagram_size,
    remote_max_datagram_frame_size,
    silence_packet_log,
)

__all__ = ["Address", "LinkEndpoint", "QuicLink", "Received", "quic_clock"]

logger = logging.getLogger("edgeswarm.transport")

Address = Any
"""A socket address tuple as ``recvfrom`` returns it."""
Received = tuple[bytes, int]
"""What one read returned: ``(datagram, 0)`` or ``(gro_buffer, segment_size)``."""
SHORT_HEADER_OVERHEAD = 1 + 20 + 4 + 16
"""Worst case of a 1-RTT packet around its frames: flags, CID, packet number, AEAD tag."""
DATAGRAM_FRAME_OVERHEAD = 1 + 4
"""DATAGRAM frame type and length."""
INTERNAL_ERROR = 0x1
MAX_TRANSMIT_FAILURES = 8
"""Consecutive ``datagrams_to_send`` errors before a connection is dropped.

qh3 2.1.0 as a server fails to build its first flight to an aioquic client
("packet builder capacity exhausted") and builds it when the client's
retransmitted Initial arrives (about a second later: aioquic's first probe
timeout), as it does under its own ``QuicServer``. So a server link whose
handshake flight failed keeps the connection (:attr:`QuicLink.build_failures`
tells the endpoint it did decrypt), and arms no timer from the failed state:
the library's timer would fire into the same failure and drop the connection
before the client's retransmission could help. The pre-auth deadline still
bounds such a connection."""
quic_clock = time.monotonic
"""The clock of every ``now`` given to the QUIC library and of its timers: not
``loop.time()``, which is coarse on some loops (uvloop: 1 ms) and would make
RTT samples and loss timers jump."""


class LinkEndpoint(Protocol):
    """What a link needs from the UDP endpoint carrying it (``endpoint.UdpEndpoint``)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the endpoint reads on; links arm their timers on it."""
        ...

    def want_transmit(self, link: QuicLink) -> None:
        """``link`` has queued data; transmit it at the end of this wakeup."""

    def transmit_now(self, link: QuicLink) -> None:
        """Transmit ``link`` now, unless a read wakeup will at its end."""

    def send_datagrams(self, datagrams: list[tuple[bytes, Address]], link: QuicLink) -> None:
        """Send a connection's datagrams."""

    def cid_issued(self, link: QuicLink, cid: bytes) -> None:
        """A connection announced a new CID of ours."""

    def cid_retired(self, link: QuicLink, cid: bytes) -> None:
        """A connection retired a CID of ours."""

    def link_lost(self, link: QuicLink) -> None:
        """A connection is over."""

    def authenticated(self, link: QuicLink) -> None:
        """The link's handler says its peer proved its identity."""


class QuicLink:
    """One QUIC connection and its session stream (the ``SessionLink``)."""

    def __init__(
        self,
        *,
        stack: QuicStack,
        quic: Any,
        endpoint: LinkEndpoint,
        handler: StreamHandler,
        is_server: bool,
        max_datagram_size: int,
    ) -> None:
        self._stack = stack
        self._quic = quic
        silence_packet_log(stack, quic)
        self._endpoint = endpoint
        self._handler = handler
        self._is_server = is_server
        self._max_datagram_size = max_datagram_size
        self._stream_id: int | None = None
        self._made = False
        self._lost = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._peer = "?"
        self._handshake_complete = False
        self._transmit_failures = 0
        self._backlog_waiters: list[tuple[int, asyncio.Future[None]]] = []
        loop = asyncio.get_running_loop()
        self.handshake: asyncio.Future[None] = loop.create_future()
        """Done when the handshake completes; a ``HandshakeError`` when it cannot."""
        self.closed = asyncio.Event()
        """Set once the connection is over."""
        self.cids: set[bytes] = set()
        """Connection IDs routed to this link (server)."""
        self.resumed = False
        """Whether the handshake resumed a TLS session from a ticket."""
        self.early_data_accepted = False
        """Whether the peer accepted 0-RTT data."""
        self.datagrams_sent = 0
        """Datagrams this connection has sent (a server link that answered its first
        datagrams with nothing could not decrypt them, unless ``build_failures``)."""
        self.build_failures = 0
        """Times the library raised building this connection's packets (it had
        decrypted what it received: see ``MAX_TRANSMIT_FAILURES``)."""
        self.is_authenticated = False
        """Whether the handler said its peer proved its identity."""

    # --- SessionLink -----------------------------------------------------

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def stack(self) -> str:
        """Name of the QUIC library carrying this link."""
        return self._stack.name

    def send(self, data: bytes, *, end_stream: bool = False) -> None:
        if self._stream_id is None or self._lost:
            return
        try:
            self._quic.send_stream_data(self._stream_id, data, end_stream)
        except Exception as error:  # closed by the peer; its TERMINATED event is on the way
            logger.debug("send on a closing connection dropped", extra={"error": repr(error)})
            return
        self._endpoint.want_transmit(self)

    def transmit_now(self) -> None:
        self._endpoint.transmit_now(self)

    @property
    def send_backlog(self) -> int | None:
        if self._stream_id is None or not self._stack.send_backlog or self._lost:
            return None
        try:
            return int(self._quic.get_send_buffer_size(self._stream_id))
        except Exception:  # a stream the library no longer knows: nothing waits
            return 0

    async def wait_send_backlog(self, at_most: int) -> None:
        backlog = self.send_backlog
        if backlog is None or backlog <= at_most:
            return
        waiter: asyncio.Future[None] = self._endpoint.loop.create_future()
        self._backlog_waiters.append((at_most, waiter))
        try:
            await waiter
        finally:
            self._backlog_waiters = [(n, w) for n, w in self._backlog_waiters if w is not waiter]

    def _wake_backlog_waiters(self) -> None:
        """After a transmit: release those waiting for the backlog to shrink this far."""
        backlog = self.send_backlog
        for at_most, waiter in self._backlog_waiters:
            if (backlog is None or backlog <= at_most) and not waiter.done():
                waiter.set_result(None)

    def send_datagram(self, data: bytes) -> bool:
        limit = self.max_datagram_payload
        if limit is None or len(data) > limit or self._lost:
            return False
        try:
            self._quic.send_datagram_frame(data)
        except Exception as error:  # closed by the peer; its TERMINATED event is on the way
            logger.debug("datagram on a closing connection dropped", extra={"error": repr(error)})
            return False
        self._endpoint.want_transmit(self)
        return True

    @property
    def max_datagram_payload(self) -> int | None:
        if not self._handshake_complete:
            return None
        remote = remote_max_datagram_frame_size(self._quic)
        if remote is None or remote <= DATAGRAM_FRAME_OVERHEAD:
            return None
        # what the path carries now, not the ceiling probing may not have reached (or
        # fell back from): a frame larger than the packets being built fails the connection
        size = min(
            self._max_datagram_size, path_datagram_size(self._quic) or self._max_datagram_size
        )
        fits = size - SHORT_HEADER_OVERHEAD - DATAGRAM_FRAME_OVERHEAD
        return max(0, min(remote - DATAGRAM_FRAME_OVERHEAD, fits))

    def mark_authenticated(self) -> None:
        if not self.is_authenticated:
            self.is_authenticated = True
            self._endpoint.authenticated(self)

    def close_connection(self, *, error_code: int = 0, reason: str = "") -> None:
        if not self._lost:
            self.transmit(quic_clock())  # queued stream data goes first
            self._quic.close(error_code=error_code, reason_phrase=reason)
            self._endpoint.want_transmit(self)

    # --- driven by the endpoint -----------------------------------------

    def set_peer(self, peer: str) -> None:
        self._peer = peer

    def connect(self, addr: Address, now: float) -> None:
        """Client: start the handshake."""
        self._quic.connect(addr, now=now)
        self.transmit(now)

    def open_session_stream(self) -> None:
        """Client: open the session stream and hand the link to the handler."""
        self._stream_id = self._quic.get_next_available_stream_id()
        self._made = True
        self._handler.connection_made(self)

    def receive(self, units: list[Received], addr: Address, now: float) -> None:
        """Feed datagrams from one address; events wait for ``process_events``.

        Each unit is ``(datagram, 0)`` or ``(gro_buffer, segment_size)``: a GRO
        buffer of one connection's 1-RTT packets goes to the library whole where
        it can split it itself (qh3), else as its datagrams.
        """
        quic = self._quic
        stack = self._stack
        try:
            singles: list[bytes] = []
            for data, segment in units:
                if not segment:
                    singles.append(data)
                    continue
                if singles:
                    self._receive_datagrams(singles, addr, now)
                    singles = []
                if stack.gro_receive:
                    quic.receive_gro_buffer(data, segment, addr, now=now)
                else:
                    self._receive_datagrams(
                        [data[i : i + segment] for i in range(0, len(data), segment)], addr, now
                    )
            if singles:
                self._receive_datagrams(singles, addr, now)
        except Exception as error:  # drop what the library chokes on, keep the connection
            logger.warning(
                "QUIC library refused datagrams",
                extra={"peer": self._peer, "stack": stack.name, "error": repr(error)},
            )

    def _receive_datagrams(self, datagrams: list[bytes], addr: Address, now: float) -> None:
        quic = self._quic
        if len(datagrams) > 1 and self._stack.batched_receive:
            quic.receive_many_datagrams(datagrams, addr, now=now)
        else:
            for data in datagrams:
                quic.receive_datagram(data, addr, now=now)

    def process_events(self) -> None:
        """Hand every pending QUIC event to the handler or the endpoint."""
        quic = self._quic
        kinds = self._stack.event_kinds
        # Session-stream data of consecutive events (one per packet) reaches the
        # handler as one call: a handler's per-call work is then per wakeup.
        chunks: list[bytes] = []
        while (event := quic.next_event()) is not None:
            kind = kinds.get(type(event))
            if kind is EventKind.STREAM_DATA:
                if event.stream_id == self._stream_id and not event.end_stream:
                    chunks.append(event.data)
                    continue
                self._deliver(chunks)
                self._stream_data(event.stream_id, event.data, event.end_stream)
                continue
            self._deliver(chunks)
            if kind is EventKind.DATAGRAM:
                receiver = getattr(self._handler, "datagram_received", None)
                if receiver is not None and self._made:
                    receiver(event.data)
            elif kind is EventKind.STREAM_RESET:
                if event.stream_id == self._stream_id:
                    self._handler.data_received(b"", end_stream=True)
            elif kind is EventKind.HANDSHAKE_COMPLETED:
                self._handshake_complete = True
                self.resumed = bool(event.session_resumed)
                self.early_data_accepted = bool(event.early_data_accepted)
                if not self.handshake.done():
                    self.handshake.set_result(None)
            elif kind is EventKind.CID_ISSUED:
                self._endpoint.cid_issued(self, event.connection_id)
            elif kind is EventKind.CID_RETIRED:
                self._endpoint.cid_retired(self, event.connection_id)
            elif kind is EventKind.TERMINATED:
                reason = event.reason_phrase or f"QUIC error {event.error_code:#x}"
                self.mark_lost(reason)
        self._deliver(chunks)

    def _deliver(self, chunks: list[bytes]) -> None:
        """Hand the session stream's pending ``chunks`` to the handler (then empty)."""
        if chunks:
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self._handler.data_received(data, end_stream=False)

    def _stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if self._stream_id is None and self._is_server:
            self._stream_id = stream_id
            self._made = True
            self._handler.connection_made(self)
        if stream_id == self._stream_id:
            self._handler.data_received(data, end_stream=end_stream)
        else:
            logger.warning(
                "data on a second stream ignored",
                extra={"stream_id": stream_id, "peer": self._peer},
            )

    def transmit(self, now: float) -> None:
        """Send what the connection has to send and re-arm its timer."""
        endpoint = self._endpoint
        try:
            datagrams = datagrams_to_send(self._stack, self._quic, now)
            self._transmit_failures = 0
        except Exception as error:  # see MAX_TRANSMIT_FAILURES
            self._transmit_failures += 1
            self.build_failures += 1
            if self._transmit_failures >= MAX_TRANSMIT_FAILURES:
                self.library_failed(error)
                return
            logger.debug("QUIC library could not build packets", extra={"error": repr(error)})
            if self._is_server and not self._handshake_complete:
                return  # wait for the client's retransmission (MAX_TRANSMIT_FAILURES)
            datagrams = []
        if datagrams:
            self.datagrams_sent += len(datagrams)
            endpoint.send_datagrams(datagrams, self)
        if self._backlog_waiters:
            self._wake_backlog_waiters()
        timer_at = self._quic.get_timer()
        if self._timer is not None and self._timer_at != timer_at:
            self._timer.cancel()
            self._timer = None
        if self._timer is None and timer_at is not None and not self._lost:
            delay = max(0.0, timer_at - quic_clock())  # the loop's clock may be coarser
            self._timer = endpoint.loop.call_later(delay, self._on_timer)
        self._timer_at = timer_at

    def _on_timer(self) -> None:
        timer_at = self._timer_at
        self._timer = None
        self._timer_at = None
        now = quic_clock()
        try:  # a coarse loop timer may fire a little early: the deadline has come
            self._quic.handle_timer(now=max(now, timer_at or now))
        except Exception as error:
            self.library_failed(error)
            return
        self.process_events()
        self.transmit(now)

    def library_failed(self, error: Exception) -> None:
        """The QUIC library raised: log it and drop this connection."""
        logger.error(
            "QUIC library failed; connection dropped",
            extra={"peer": self._peer, "stack": self._stack.name, "error": repr(error)},
        )
        try:  # tell the peer, if the library still can
            self._quic.close(error_code=INTERNAL_ERROR, reason_phrase="internal error")
            self._endpoint.send_datagrams(self._quic.datagrams_to_send(now=quic_clock()), self)
        except Exception:
            pass
        self.mark_lost(f"QUIC library error: {error}")

    def fail(self, error: Exception) -> None:
        """The path failed before the handshake (ICMP unreachable)."""
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(str(error)))
        self.mark_lost(str(error))

    def mark_lost(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.handshake.done():
            if self._is_server:  # nobody awaits a server link's handshake
                self.handshake.cancel()
            else:
                self.handshake.set_exception(HandshakeError(reason))
        self.closed.set()
        for _, waiter in self._backlog_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._endpoint.link_lost(self)
        if self._made:
            self._handler.connection_lost(reason)
