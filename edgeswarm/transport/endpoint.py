"""UDP endpoints: the I/O half of the adapter.

A ``UdpEndpoint`` owns one non-blocking UDP socket and moves datagrams for
the QUIC links it carries (``link.py``): a ``ServerEndpoint``
(``server_endpoint.py``) routes them by connection ID and accepts new
connections within its pre-auth budget, a ``ClientEndpoint`` carries one.

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
from collections import deque

from .api import TransportSettings
from .link import Address, QuicLink, Received, quic_clock

__all__ = ["ClientEndpoint", "UdpEndpoint", "destination_cid", "is_initial"]

logger = logging.getLogger("edgeswarm.transport")

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF
MIN_INITIAL_DATAGRAM = 1200
MAX_UDP_PAYLOAD = 65527
MAX_SEND_BACKLOG = 4096
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
SOL_UDP = getattr(socket, "SOL_UDP", 17)
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
GRO_CMSG_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_INT = struct.Struct("@i")
_U16 = struct.Struct("@H")


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


def is_initial(data: bytes, version: int) -> bool:
    """Whether a long-header packet of ``version`` is an Initial."""
    packet_type = (data[0] & 0x30) >> 4
    return packet_type == (1 if version == QUIC_V2 else 0)


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
                logger.debug("socket buffer size refused", extra={"option": option})
        self._gso = False
        self._gro = False
        if settings.segmentation_offload and sys.platform == "linux":
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self._gro = True
                self._gso = sock.getsockopt(SOL_UDP, UDP_SEGMENT) >= 0
            except OSError:
                logger.debug("UDP GSO/GRO not available")
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

    def authenticated(self, link: QuicLink) -> None:
        """The link's handler says its peer proved its identity."""

    def after_wakeup(self) -> None:
        """A read wakeup fed its datagrams and transmitted."""

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
        self.after_wakeup()

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
        logger.debug("sendto failed", extra={"peer": link.peer, "error": str(error)})

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
