"""UDP endpoint and QUIC links: the I/O half of the adapter.

A ``QuicLink`` drives one library ``QuicConnection`` (sans-I/O) and binds its
session stream to one ``StreamHandler``. A ``UdpEndpoint`` owns one
non-blocking UDP socket and moves datagrams for its links.

Speed comes from the wakeup discipline, not from the library: when the
socket becomes readable the endpoint reads it (``recvfrom`` until
``BlockingIOError`` or ``recv_batch`` datagrams, counting each GRO segment),
feeds every datagram to its connection, lets each touched connection's events
reach the handlers (whose replies only queue stream data), then transmits once
per connection and returns to the loop; a socket with more queued is readable
again at once. The bound keeps acknowledgements flowing while a peer's window
is still arriving: with no bound (one GRO read returns up to 64 datagrams) a
gateway read a client's whole 5 MB window before sending one ACK, and both
sides took turns idling (measured: acks in bursts of 256 every 33-55 ms).
Sends made outside a read wakeup are coalesced by one ``call_soon``, unless
the handler asks ``transmit_now`` (the gateway does for the acks of a commit
group, which must not wait behind the loop's next read). The
library classes ``QuicServer``/``QuicConnectionProtocol`` handle one datagram
per wakeup and transmit after each, which costs a packet build and a
``sendto`` per received packet.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgeswarm.errors import EdgeswarmError

from .stacks import EventKind, QuicStack, remote_max_datagram_frame_size

if TYPE_CHECKING:
    from .quic import StreamHandler
    from .tickets import ServerTicketStore

log = logging.getLogger("edgeswarm.transport")

Address = Any
"""A socket address tuple as ``recvfrom`` returns it."""

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF
MIN_INITIAL_DATAGRAM = 1200
MAX_UDP_PAYLOAD = 65527
SHORT_HEADER_OVERHEAD = 1 + 20 + 4 + 16
"""Worst case of a 1-RTT packet around its frames: flags, CID, packet number, AEAD tag."""
DATAGRAM_FRAME_OVERHEAD = 1 + 4
"""DATAGRAM frame type and length."""
MAX_SEND_BACKLOG = 4096
INTERNAL_ERROR = 0x1
MAX_TRANSMIT_FAILURES = 8
"""Consecutive ``datagrams_to_send`` errors before a connection is dropped. qh3 2.1.0
fails its first flight to an aioquic client ("packet builder capacity exhausted") and
succeeds on a later try, as it does under its own ``QuicServer``."""
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
GRO_CMSG_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_INT = struct.Struct("@i")
quic_clock = time.monotonic
"""The clock of every ``now`` given to the QUIC library and of its timers: not
``loop.time()``, which is coarse on some loops (uvloop: 1 ms) and would make
RTT samples and loss timers jump."""
Received = tuple[bytes, int]
"""What one read returned: ``(datagram, 0)`` or ``(gro_buffer, segment_size)``."""
_U16 = struct.Struct("@H")


@dataclass(frozen=True, kw_only=True)
class TransportSettings:
    """Tuning of the QUIC transport; the defaults are the measured safe winners."""

    max_datagram_size: int = 1350
    """Largest UDP payload sent. 1200-1350 is safe on the Internet; larger only on
    links known to carry it (aioquic breaks above ~16 KB)."""
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


def destination_cid(data: bytes, host_cid_length: int) -> bytes | None:
    """The Destination Connection ID of a QUIC packet (RFC 8999 invariants)."""
    if not data:
        return None
    if data[0] & 0x80:
        if len(data) < 7:
            return None
        length = data[5]
        if length > 20 or len(data) < 6 + length:
            return None
        return data[6 : 6 + length]
    if len(data) < 1 + host_cid_length:
        return None
    return data[1 : 1 + host_cid_length]


def _is_initial(data: bytes, version: int) -> bool:
    packet_type = (data[0] & 0x30) >> 4
    return packet_type == (1 if version == QUIC_V2 else 0)


class HandshakeError(EdgeswarmError, ConnectionError):
    """The QUIC handshake did not complete (refused, closed by the peer, bad certificate)."""


class QuicLink:
    """One QUIC connection and its session stream (the ``SessionLink``)."""

    def __init__(
        self,
        *,
        stack: QuicStack,
        quic: Any,
        endpoint: UdpEndpoint,
        handler: StreamHandler,
        is_server: bool,
        max_datagram_size: int,
    ) -> None:
        self._stack = stack
        self._quic = quic
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
            log.debug("send on a closing connection dropped", extra={"error": repr(error)})
            return
        self._endpoint.want_transmit(self)

    def transmit_now(self) -> None:
        self._endpoint.transmit_now(self)

    def send_datagram(self, data: bytes) -> bool:
        limit = self.max_datagram_payload
        if limit is None or len(data) > limit or self._lost:
            return False
        try:
            self._quic.send_datagram_frame(data)
        except Exception as error:  # closed by the peer; its TERMINATED event is on the way
            log.debug("datagram on a closing connection dropped", extra={"error": repr(error)})
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
        fits = self._max_datagram_size - SHORT_HEADER_OVERHEAD - DATAGRAM_FRAME_OVERHEAD
        return max(0, min(remote - DATAGRAM_FRAME_OVERHEAD, fits))

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
            log.warning(
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
            log.warning(
                "data on a second stream ignored",
                extra={"stream_id": stream_id, "peer": self._peer},
            )

    def transmit(self, now: float) -> None:
        """Send what the connection has to send and re-arm its timer."""
        endpoint = self._endpoint
        try:
            datagrams = self._quic.datagrams_to_send(now=now)
            self._transmit_failures = 0
        except Exception as error:  # see MAX_TRANSMIT_FAILURES
            self._transmit_failures += 1
            if self._transmit_failures >= MAX_TRANSMIT_FAILURES:
                self.library_failed(error)
                return
            log.debug("QUIC library could not build packets", extra={"error": repr(error)})
            datagrams = []
        if datagrams:
            endpoint.send_datagrams(datagrams, self)
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
        log.error(
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
        self._endpoint.link_lost(self)
        if self._made:
            self._handler.connection_lost(reason)


class UdpEndpoint:
    """One non-blocking UDP socket and the QUIC links it carries."""

    def __init__(self, sock: socket.socket, settings: TransportSettings) -> None:
        self.loop = asyncio.get_running_loop()
        self._sock = sock
        self._settings = settings
        self._dirty: dict[QuicLink, None] = {}
        self._flush_scheduled = False
        self._in_wakeup = False
        self._backlog: deque[tuple[bytes, Address]] = deque()
        self._closed = False
        self.dropped_sends = 0
        """Datagrams dropped because the send backlog was full."""
        sock.setblocking(False)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, settings.socket_buffer_bytes)
            except OSError:  # pragma: no cover - platform refuses the size
                log.debug("socket buffer size refused", extra={"option": option})
        self._gso = False
        self._gro = False
        if settings.segmentation_offload and sys.platform == "linux":
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self._gro = True
                self._gso = sock.getsockopt(SOL_UDP, UDP_SEGMENT) >= 0
            except OSError:
                log.debug("UDP GSO/GRO not available")
        self.loop.add_reader(sock.fileno(), self._on_readable)

    # --- routing (overridden by the server and client endpoints) ---------

    def route(self, data: bytes, addr: Address) -> QuicLink | None:
        raise NotImplementedError

    def cid_issued(self, link: QuicLink, cid: bytes) -> None:
        """A connection announced a new CID of ours."""

    def cid_retired(self, link: QuicLink, cid: bytes) -> None:
        """A connection retired a CID of ours."""

    def link_lost(self, link: QuicLink) -> None:
        """A connection is over."""
        self._dirty.pop(link, None)

    def receive_error(self, error: OSError) -> None:
        """``recvfrom`` reported an ICMP error."""

    # --- I/O -------------------------------------------------------------

    def same_connection(self, buffer: bytes, segment: int) -> bool:
        """Whether every segment of a GRO buffer is a 1-RTT packet of one connection."""
        return True

    def _on_readable(self) -> None:
        sock = self._sock
        batch: dict[QuicLink, tuple[Address, list[Received]]] = {}
        gro = self._gro
        budget = self._settings.recv_batch
        received = 0
        while received < budget:
            try:
                if gro:
                    data, ancdata, _, addr = sock.recvmsg(MAX_UDP_PAYLOAD, GRO_CMSG_SPACE)
                else:
                    data, addr = sock.recvfrom(MAX_UDP_PAYLOAD)
                    ancdata = []
            except (BlockingIOError, InterruptedError):
                break
            except OSError as error:
                self.receive_error(error)
                continue
            segment = 0
            for level, kind, value in ancdata:
                if level == SOL_UDP and kind == UDP_GRO:
                    segment = _INT.unpack_from(value)[0]
            units: list[Received]
            if 0 < segment < len(data):
                received += -(-len(data) // segment)
                if self.same_connection(data, segment):  # one buffer for the library
                    units = [(data, segment)]
                else:
                    view = memoryview(data)
                    starts = range(0, len(data), segment)
                    units = [(bytes(view[i : i + segment]), 0) for i in starts]
            else:
                received += 1
                units = [(data, 0)]
            for unit in units:
                link = self.route(unit[0], addr)
                if link is None:
                    continue
                entry = batch.get(link)
                if entry is None or entry[0] != addr:
                    if entry is not None:  # the peer moved: feed what we have first
                        link.receive(entry[1], entry[0], quic_clock())
                    batch[link] = (addr, [unit])
                else:
                    entry[1].append(unit)
        if not batch:
            return
        now = quic_clock()
        self._in_wakeup = True
        try:
            for link, (addr, units) in batch.items():
                link.receive(units, addr, now)
            for link in batch:
                link.process_events()
                self._dirty[link] = None
        finally:
            self._in_wakeup = False
        self.flush()

    def want_transmit(self, link: QuicLink) -> None:
        """``link`` has queued data; transmit at the end of this wakeup."""
        self._dirty[link] = None
        if not self._in_wakeup and not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def transmit_now(self, link: QuicLink) -> None:
        """Transmit ``link`` now, unless a read wakeup will at its end."""
        if self._in_wakeup or link not in self._dirty:
            return
        del self._dirty[link]
        link.transmit(quic_clock())

    def flush(self) -> None:
        """Transmit every link with queued data, once."""
        self._flush_scheduled = False
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        now = quic_clock()
        for link in dirty:
            link.transmit(now)

    def send_datagrams(self, datagrams: list[tuple[bytes, Address]], link: QuicLink) -> None:
        """Send a connection's datagrams, several per syscall where GSO allows."""
        if not self._gso or len(datagrams) == 1 or self._backlog:
            for data, addr in datagrams:
                self.sendto(data, addr, link)
            return
        count = len(datagrams)
        i = 0
        while i < count:
            data, addr = datagrams[i]
            size = len(data)
            j = i + 1
            total = size
            while (
                j < count
                and j - i < GSO_MAX_SEGMENTS
                and datagrams[j][1] == addr
                and len(datagrams[j][0]) <= size
                and total + len(datagrams[j][0]) <= GSO_MAX_BYTES
            ):
                total += len(datagrams[j][0])
                j += 1
                if len(datagrams[j - 1][0]) < size:  # only the last segment may be short
                    break
            if j - i == 1:
                self.sendto(data, addr, link)
            else:
                self._send_segments(datagrams[i:j], size, addr, link)
            i = j

    def _send_segments(
        self, group: list[tuple[bytes, Address]], size: int, addr: Address, link: QuicLink
    ) -> None:
        if self._closed:
            return
        ancdata = [(SOL_UDP, UDP_SEGMENT, _U16.pack(size))]
        try:
            self._sendmsg(b"".join(data for data, _ in group), ancdata, addr)
        except (BlockingIOError, InterruptedError):
            for data, daddr in group:
                self._queue(data, daddr)
            self.loop.add_writer(self._sock.fileno(), self._on_writable)
        except OSError as error:
            if error.errno in (errno.EIO, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOPROTOOPT):
                self._gso = False  # the path cannot segment: one datagram per syscall
                for data, daddr in group:
                    self.sendto(data, daddr, link)
            else:
                self.send_error(link, error)

    def _sendmsg(self, data: bytes, ancdata: list[tuple[int, int, bytes]], addr: Address) -> None:
        self._sock.sendmsg([data], ancdata, 0, addr)

    def sendto(self, data: bytes, addr: Address, link: QuicLink | None) -> None:
        if self._closed:
            return
        if self._backlog:
            self._queue(data, addr)
            return
        try:
            self._send(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
            self.loop.add_writer(self._sock.fileno(), self._on_writable)
        except OSError as error:
            if link is not None:
                self.send_error(link, error)

    def _send(self, data: bytes, addr: Address) -> None:
        self._sock.sendto(data, addr)

    def send_error(self, link: QuicLink, error: OSError) -> None:
        log.debug("sendto failed", extra={"peer": link.peer, "error": str(error)})

    def _queue(self, data: bytes, addr: Address) -> None:
        if len(self._backlog) >= MAX_SEND_BACKLOG:
            self.dropped_sends += 1  # QUIC loss recovery resends what matters
            return
        self._backlog.append((data, addr))

    def _on_writable(self) -> None:
        backlog = self._backlog
        while backlog:
            data, addr = backlog[0]
            try:
                self._send(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            backlog.popleft()
        self.loop.remove_writer(self._sock.fileno())

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self._closed:
            return
        self._closed = True
        self.loop.remove_reader(self._sock.fileno())
        if self._backlog:
            self.loop.remove_writer(self._sock.fileno())
            self._backlog.clear()
        self._sock.close()


class ServerEndpoint(UdpEndpoint):
    """Accepts connections: routes datagrams by Destination Connection ID."""

    def __init__(
        self,
        sock: socket.socket,
        settings: TransportSettings,
        *,
        stack: QuicStack,
        configuration: Any,
        handler_factory: Callable[[], StreamHandler],
        tickets: ServerTicketStore,
    ) -> None:
        super().__init__(sock, settings)
        self._stack = stack
        self._configuration = configuration
        self._handler_factory = handler_factory
        self._tickets = tickets
        self._cid_length: int = configuration.connection_id_length
        self._versions: list[int] = list(configuration.supported_versions)
        self.links: dict[bytes, QuicLink] = {}

    def same_connection(self, buffer: bytes, segment: int) -> bool:
        if buffer[0] & 0x80:
            return False
        end = 1 + self._cid_length
        cid = buffer[1:end]
        return all(
            not buffer[i] & 0x80 and buffer[i + 1 : i + end] == cid
            for i in range(segment, len(buffer), segment)
        )

    def route(self, data: bytes, addr: Address) -> QuicLink | None:
        cid = destination_cid(data, self._cid_length)
        if cid is None:
            return None
        link = self.links.get(cid)
        if link is not None or not data[0] & 0x80 or len(data) < MIN_INITIAL_DATAGRAM:
            return link
        version = int.from_bytes(data[1:5], "big")
        if version not in self._versions:
            if version != 0:
                self._version_negotiation(data, cid, addr)
            return None
        if not _is_initial(data, version):
            return None
        quic = self._stack.connection_class(
            configuration=self._configuration,
            original_destination_connection_id=cid,
            session_ticket_fetcher=self._tickets.pop,
            session_ticket_handler=self._tickets.add,
        )
        link = QuicLink(
            stack=self._stack,
            quic=quic,
            endpoint=self,
            handler=self._handler_factory(),
            is_server=True,
            max_datagram_size=self._settings.max_datagram_size,
        )
        link.set_peer(f"{addr[0]}:{addr[1]}")
        for key in (cid, quic.host_cid):
            self.links[key] = link
            link.cids.add(key)
        return link

    def _version_negotiation(self, data: bytes, cid: bytes, addr: Address) -> None:
        offset = 6 + len(cid)
        if len(data) <= offset:
            return
        source_cid = data[offset + 1 : offset + 1 + data[offset]]
        packet = self._stack.encode_version_negotiation(
            source_cid=cid, destination_cid=source_cid, supported_versions=self._versions
        )
        self.sendto(packet, addr, None)

    def cid_issued(self, link: QuicLink, cid: bytes) -> None:
        self.links[cid] = link
        link.cids.add(cid)

    def cid_retired(self, link: QuicLink, cid: bytes) -> None:
        if self.links.get(cid) is link:
            del self.links[cid]
        link.cids.discard(cid)

    def link_lost(self, link: QuicLink) -> None:
        super().link_lost(link)
        for cid in link.cids:
            if self.links.get(cid) is link:
                del self.links[cid]
        link.cids.clear()

    def shutdown(self) -> None:
        """Send what is queued, close every connection, close the socket."""
        self.flush()
        links = list(dict.fromkeys(self.links.values()))
        for link in links:
            link.close_connection(reason="listener closed")
        self.flush()
        for link in links:
            link.mark_lost("listener closed")
        self.close()


class ClientEndpoint(UdpEndpoint):
    """A connected UDP socket carrying one client connection."""

    def __init__(self, sock: socket.socket, settings: TransportSettings) -> None:
        super().__init__(sock, settings)
        self.link: QuicLink | None = None

    def route(self, data: bytes, addr: Address) -> QuicLink | None:
        return self.link

    def _send(self, data: bytes, addr: Address) -> None:
        self._sock.send(data)

    def _sendmsg(self, data: bytes, ancdata: list[tuple[int, int, bytes]], addr: Address) -> None:
        self._sock.sendmsg([data], ancdata)

    def receive_error(self, error: OSError) -> None:
        if self.link is not None and not self.link.handshake.done():
            self.link.fail(error)

    def send_error(self, link: QuicLink, error: OSError) -> None:
        if not link.handshake.done():
            link.fail(error)
