"""The server's UDP endpoint: routes datagrams by connection ID, accepts new connections
within the pre-auth budget (``admission.py``).

A datagram whose Destination Connection ID belongs to a connection goes to
it. Any other long-header Initial of a version we speak is a connection
attempt: the :class:`~edgeswarm.transport.admission.Admission` refuses it,
answers it with a stateless Retry (the token is AES-GCM sealed: address,
connection IDs, time; aioquic's ``QuicRetryTokenHandler``, valid 30 s), or
accepts it. An accepted connection whose first datagrams get no answer from
the QUIC library (they did not decrypt) is dropped at the end of that
wakeup, unless the library failed building its answer (qh3 and aioquic
clients: ``link.MAX_TRANSMIT_FAILURES``); one not authenticated by its
handler within ``deadline_s`` is closed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from aioquic.quic.retry import QuicRetryTokenHandler

from .admission import Admission, AdmissionStats, Verdict
from .api import AdmissionLimits, HandlerFactory, TransportSettings
from .endpoint import MIN_INITIAL_DATAGRAM, UdpEndpoint, destination_cid, is_initial
from .link import Address, QuicLink, quic_clock
from .stacks import QuicStack
from .tickets import ServerTicketStore

__all__ = ["ServerEndpoint"]

logger = logging.getLogger("edgeswarm.transport")

RETRY_CID_BYTES = 8
"""Length of the connection ID a Retry asks the client to use."""
BUDGET_LOG_INTERVAL_S = 10.0
"""At most one ``pre-auth budget`` warning per interval; it counts what happened since."""


class ServerEndpoint(UdpEndpoint):
    """Accepts connections: routes datagrams by Destination Connection ID."""

    def __init__(
        self,
        sock: socket.socket,
        settings: TransportSettings,
        *,
        stack: QuicStack,
        configuration: Any,
        handler_factory: HandlerFactory,
        tickets: ServerTicketStore,
        admission: AdmissionLimits,
    ) -> None:
        super().__init__(sock, settings)
        self._stack = stack
        self._configuration = configuration
        self._handler_factory = handler_factory
        self._tickets = tickets
        self._cid_length: int = configuration.connection_id_length
        self._versions: list[int] = list(configuration.supported_versions)
        self.links: dict[bytes, QuicLink] = {}
        self.admission = Admission(admission, now=quic_clock())
        """The pre-auth budget and its counters."""
        self._retry = QuicRetryTokenHandler()
        self._unauthenticated: dict[QuicLink, tuple[str, asyncio.TimerHandle]] = {}
        self._new: list[QuicLink] = []
        """Links created in this wakeup: dropped after it if they answered nothing."""
        self._logged = AdmissionStats()
        self._logged_at = -BUDGET_LOG_INTERVAL_S

    @property
    def admission_stats(self) -> AdmissionStats:
        """Counters of the pre-auth budget."""
        return self.admission.stats

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
        if not is_initial(data, version):
            return None
        return self._attempt(data, cid, addr)

    def _attempt(self, data: bytes, cid: bytes, addr: Address) -> QuicLink | None:
        """A new connection attempt: refuse, Retry, or accept it."""
        try:
            header = self._stack.pull_header(
                self._stack.buffer_class(data=data), host_cid_length=self._cid_length
            )
        except Exception:  # not a parseable Initial: nothing to answer
            return None
        now = quic_clock()
        original, retry_source = cid, None
        if header.token:
            try:
                original = self._retry.validate_token(
                    address=addr, destination_cid=cid, token=header.token, now=now
                )
            except ValueError:  # forged, expired, or for another address
                self.admission.refused_token()
                self._log_budget(now)
                return None
            retry_source = cid
        ip = str(addr[0])
        verdict = self.admission.decide(ip, validated=retry_source is not None, now=now)
        if verdict is not Verdict.ACCEPT:
            if verdict is Verdict.RETRY:
                self._send_retry(header, addr, now)
            self._log_budget(now)
            return None
        quic = self._stack.connection_class(
            configuration=self._configuration,
            original_destination_connection_id=original,
            retry_source_connection_id=retry_source,
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
        self.admission.opened(ip)
        deadline = self.loop.call_later(self.admission.limits.deadline_s, self._expire, link)
        self._unauthenticated[link] = (ip, deadline)
        self._new.append(link)
        return link

    def _send_retry(self, header: Any, addr: Address, now: float) -> None:
        source_cid = os.urandom(RETRY_CID_BYTES)
        token = self._retry.create_token(
            address=addr,
            original_destination_connection_id=header.destination_cid,
            retry_source_connection_id=source_cid,
            now=now,
        )
        packet = self._stack.encode_retry(
            version=header.version,
            source_cid=source_cid,
            destination_cid=header.source_cid,
            original_destination_cid=header.destination_cid,
            retry_token=token,
        )
        self.sendto(packet, addr, None)

    def after_wakeup(self) -> None:
        """Drop the links created in this wakeup that answered nothing (forged Initials)."""
        if not self._new:
            return
        new, self._new = self._new, []
        for link in new:
            if link.datagrams_sent == 0 and not link.build_failures and not link.closed.is_set():
                self.admission.stats.discarded += 1
                link.mark_lost("first datagrams did not decrypt")

    def _expire(self, link: QuicLink) -> None:
        """``deadline_s`` passed and the link's peer is still unauthenticated: close it."""
        if link not in self._unauthenticated:
            return
        self._leave(link)
        self.admission.stats.expired += 1
        logger.info(
            "connection closed: not authenticated in time",
            extra={"peer": link.peer, "deadline_s": self.admission.limits.deadline_s},
        )
        link.close_connection(reason="not authenticated in time")

    def _leave(self, link: QuicLink) -> None:
        """``link`` leaves the pre-auth budget (authenticated, closed or gone)."""
        entry = self._unauthenticated.pop(link, None)
        if entry is not None:
            ip, deadline = entry
            deadline.cancel()
            self.admission.left(ip)

    def authenticated(self, link: QuicLink) -> None:
        if link in self._unauthenticated:
            self.admission.stats.authenticated += 1
            self._leave(link)

    def _log_budget(self, now: float) -> None:
        """One warning per interval at most, with what the budget turned away since."""
        if now - self._logged_at < BUDGET_LOG_INTERVAL_S:
            return
        stats, last = self.admission.stats, self._logged
        refused, retries = stats.refused - last.refused, stats.retries - last.retries
        self._logged = AdmissionStats(**vars(stats))
        self._logged_at = now
        logger.warning(
            "pre-auth budget: connection attempts refused or asked to Retry",
            extra={
                "refused": refused,
                "retries": retries,
                "unauthenticated": self.admission.unauthenticated,
                "interval_s": BUDGET_LOG_INTERVAL_S,
            },
        )

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
        self._leave(link)
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
