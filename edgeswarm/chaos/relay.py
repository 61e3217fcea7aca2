"""A userspace UDP relay that delays every datagram by ``delay ± jitter`` (uniform, each
way), so datagrams sent close together overtake each other: latency, jitter and
reordering for QUIC where the kernel has no ``netem``; it can also drop everything
(a partition) or what is over a size (a path whose MTU shrank).

Clients send to :attr:`UdpRelay.address`; each client gets an upstream socket of its
own towards the target, so replies find their way back. Runs on one thread; stop with
:meth:`UdpRelay.close`.
"""

from __future__ import annotations

import heapq
import random
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass(order=True)
class _Scheduled:
    due: float
    order: int
    out: socket.socket = field(compare=False)
    to: tuple[str, int] = field(compare=False)
    data: bytes = field(compare=False)


class UdpRelay:
    """Delays, jitters and so reorders datagrams between clients and ``target``."""

    MAX_CLIENTS = 64

    def __init__(
        self, target: tuple[str, int], *, delay_s: float, jitter_s: float, seed: int = 0
    ) -> None:
        self.target = target
        self.delay_s, self.jitter_s = delay_s, jitter_s
        self.relayed = 0
        self.dropping = False
        """While True every datagram is dropped, both ways: a partition."""
        self.max_datagram_bytes: int | None = None
        """Datagrams larger than this are dropped, both ways, as a path whose MTU shrank
        drops them (None: any size passes)."""
        self.dropped = 0
        self.dropped_large = 0
        """Datagrams dropped for their size (also counted in ``dropped``)."""
        self.reordered = 0
        """Datagrams sent on after one that arrived later than them (per direction)."""
        self._random = random.Random(seed)
        self._listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._listen.bind(("127.0.0.1", 0))
        self._upstream: dict[tuple[str, int], socket.socket] = {}
        self._client_of: dict[socket.socket, tuple[str, int]] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listen, selectors.EVENT_READ)
        self._pending: list[_Scheduled] = []
        self._arrivals = 0
        self._latest_sent: dict[socket.socket, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="udp-relay", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._listen.getsockname()
        return str(host), int(port)

    def _delay(self) -> float:
        return max(0.0, self.delay_s + self._random.uniform(-self.jitter_s, self.jitter_s))

    def _upstream_for(self, client: tuple[str, int]) -> socket.socket | None:
        upstream = self._upstream.get(client)
        if upstream is None and len(self._upstream) < self.MAX_CLIENTS:
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            upstream.bind(("127.0.0.1", 0))
            self._selector.register(upstream, selectors.EVENT_READ)
            self._upstream[client] = upstream
            self._client_of[upstream] = client
        return upstream

    def _schedule(self, out: socket.socket, to: tuple[str, int], data: bytes) -> None:
        self._arrivals += 1
        item = _Scheduled(time.monotonic() + self._delay(), self._arrivals, out, to, data)
        heapq.heappush(self._pending, item)

    def _receive(self, sock: socket.socket) -> None:
        for _ in range(256):  # bounded drain of one readable socket
            try:
                data, sender = sock.recvfrom(65536)
            except BlockingIOError:
                return
            limit = self.max_datagram_bytes
            if self.dropping:
                self.dropped += 1
            elif limit is not None and len(data) > limit:
                self.dropped += 1
                self.dropped_large += 1
            elif sock is self._listen:
                upstream = self._upstream_for(sender)
                if upstream is not None:
                    self._schedule(upstream, self.target, data)
            else:
                self._schedule(self._listen, self._client_of[sock], data)

    def _send_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0].due <= now:
            item = heapq.heappop(self._pending)
            if item.order < self._latest_sent.get(item.out, 0):
                self.reordered += 1
            self._latest_sent[item.out] = max(item.order, self._latest_sent.get(item.out, 0))
            try:
                item.out.sendto(item.data, item.to)
                self.relayed += 1
            except OSError:  # the far side is gone: UDP loses it, as the network would
                pass

    def _run(self) -> None:
        self._listen.setblocking(False)
        while not self._stop.is_set():
            wait = 0.05
            if self._pending:
                wait = min(wait, max(0.0, self._pending[0].due - time.monotonic()))
            for key, _ in self._selector.select(wait):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                sock.setblocking(False)
                self._receive(sock)
            self._send_due()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._selector.close()
        for sock in (self._listen, *self._upstream.values()):
            sock.close()
