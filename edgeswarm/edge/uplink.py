"""Store-and-forward delivery of an edge's batches to its gateway.

Every batch the tick loop produces is first appended to the on-disk
``Spool`` under the next per-edge sequence number; a pump sends spooled
batches in order as the gateway's credit allows, and a batch leaves the
spool only when the gateway acknowledges it (after its durable log
committed it). When the gateway is unreachable the edge keeps stepping and
the spool fills up to its byte bound; the overflow policy then decides
(``block``: the tick loop waits; ``drop_oldest``: the oldest batches go,
counted and logged). The connection is re-established with exponential
backoff and jitter; on reconnect, WELCOME's ``resume_seq`` releases what the
gateway already holds and the rest is resent in order (the gateway
deduplicates by sequence number, so nothing is applied twice).

A batch is encoded once, when it is spooled; the spool keeps its observation
count and a checksum beside it, and the pump sends the spooled bytes as they
are: nothing on the way out (nor at start) decodes a batch again. A batch
that fails its checksum, that the session cannot send, or that the gateway
refuses for good (ERROR with its ``seq``, ``wire.BATCH_REFUSED_CODES``) is
quarantined by the spool (counted, logged, never sent again) and delivery
goes on. A full disk under the spool (:class:`~edgeswarm.edge.spool.SpoolDiskFull`)
holds the tick loop as the ``block`` bound does: the append is retried when an ACK frees
room or every :data:`DISK_FULL_RETRY_S`, counted (``disk_full_waits``) and logged when it
starts and ends; the pump waits the same way before a send it cannot record. A spool that
cannot be read or written for any other reason is a
:class:`~edgeswarm.edge.spool.SpoolError`: logged with its path and raised, and the edge
stops. A refusal that retrying cannot change (unknown or revoked
key, bad token: :class:`~edgeswarm.client.errors.AuthRefusedError`) is
logged once and raised too: the edge stops instead of spooling for nobody.
The backoff's jitter comes from the OS's entropy, so edges that share a
``--seed`` do not retry in lockstep.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.errors import AuthRefusedError, RedirectedError, SessionEndedError
from edgeswarm.client.reconnect import Backoff, Reconnect, open_session
from edgeswarm.client.session import GatewayClient
from edgeswarm.identity import KeyPair
from edgeswarm.transport.api import TransportSettings
from edgeswarm.transport.tickets import TicketStore
from edgeswarm.wire import (
    BATCH_REFUSED_CODES,
    FEATURE_SEQ_EPOCH,
    Ack,
    Error,
    ErrorCode,
    Hello,
    LocalProtocolError,
    ObservationBatch,
    Welcome,
    code_name,
    encode_payload,
)

from .batch_groups import groups_within
from .gateway_choice import GatewayChoice
from .spool import DISK_FULL_RETRY_S, OverflowPolicy, Spool, SpoolDiskFull, SpoolError
from .spool_records import QuarantinedBatch, QuarantineReason
from .spool_room import append_when_room

logger = logging.getLogger("edgeswarm.edge")

SEND_BACKLOG_BYTES = 64 * 1024
"""Session bytes the pump lets wait in QUIC before it queues the next batch (under a
batch of 2048 observations: one batch in flight, the next ready behind it)."""
_WATCHDOG_S = 0.5
"""How often the pump checks the gateway's liveness while it waits."""


@dataclass
class UplinkCounters:
    """Delivery totals of this edge process."""

    batches: int = 0
    observations: int = 0
    acked_batches: int = 0
    acked_observations: int = 0
    resent_batches: int = 0
    connects: int = 0
    resumed: int = 0
    """Connections that resumed a TLS session (ticket)."""
    early_data: int = 0
    """Connections whose HELLO the gateway took as 0-RTT data."""
    dropped_batches: int = 0
    dropped_observations: int = 0
    quarantined_batches: int = 0
    """Batches moved to the spool's quarantine (never sent again, never acknowledged)."""
    quarantined_observations: int = 0
    seq_epochs_started: int = 0
    """Times the spool had to start a new sequence epoch (another sender used its numbers)."""
    payload_bytes: int = 0
    """Encoded OBS_BATCH bytes spooled."""
    retries: int = 0
    """Connection attempts and sessions that failed, each followed by a backoff."""
    disk_full_waits: int = 0
    """Times a spool write found the disk full and the edge waited for room."""
    redirects: int = 0
    """REDIRECTs received: a gateway sent the edge to the gateway that owns it."""


class Uplink:
    """Spools batches and delivers them to the gateway, across disconnects."""

    def __init__(
        self,
        *,
        hello: Hello,
        key: KeyPair,
        gateway: GatewayAddress,
        spool: Spool,
        more_gateways: Sequence[GatewayAddress] = (),
        backoff: Backoff | None = None,
        ack_timeout_s: float = 5.0,
        on_client: Callable[[GatewayClient], None] | None = None,
        on_quarantine: Callable[[QuarantinedBatch], None] | None = None,
        transport: TransportSettings | None = None,
        on_ack_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.hello = hello
        self.transport = transport
        """QUIC settings of the connection (``max_datagram_size``); None: the defaults."""
        self.key = key
        self.gateways = GatewayChoice((gateway, *more_gateways))
        """Where to deliver: the configured gateways and the last REDIRECT."""
        self.spool = spool
        self.ack_timeout_s = ack_timeout_s
        """Outstanding batches with no ack for this long: the gateway is gone, reconnect.

        A gateway that crashed and restarted ignores the old connection's packets,
        so without this the edge would wait for QUIC's idle timeout."""
        self.counters = UplinkCounters()
        self.tickets = TicketStore()
        self.client: GatewayClient | None = None
        self.connected = False
        self._on_client = on_client
        self._on_quarantine = on_quarantine
        self._on_ack_latency = on_ack_latency
        spool.on_quarantine = self._quarantined
        # jitter from the OS's entropy, never from --seed: edges that share a seed (the
        # default) must not retry in lockstep against a gateway that just restarted
        self.reconnect = Reconnect(backoff or Backoff())
        """Failed attempts in a row and the next delay (``client.reconnect``)."""
        self.refused: AuthRefusedError | None = None
        """Set when the gateway refused this edge for good; delivery stopped."""
        self._changed = asyncio.Event()
        self._stopping = False
        self._max_sent_seq = 0
        self._dropped_in_flight: dict[int, int] = {}
        self._ignore_acks = False
        """Set when this session's numbers turned out to be shared: its ACKs prove nothing."""

    @property
    def gateway(self) -> GatewayAddress:
        """The gateway the edge connects (or is connected) to now."""
        return self.gateways.current

    @property
    def spooled(self) -> int:
        """Batches held, waiting for an ack."""
        return len(self.spool)

    # --- producer side (tick loop) ----------------------------------------

    async def submit(self, batches: Sequence[Callable[[int], ObservationBatch]]) -> None:
        """Spool one tick's batches, ``batch_at(seq)`` each, under consecutive sequence
        numbers as one group commit (several when the group exceeds the spool's bound).

        With the ``block`` policy this waits while the spool is full (the
        edge stops producing until acks make room).
        """
        seq = self.spool.next_seq()
        encoded: list[tuple[int, bytes, int]] = []
        for offset, batch_at in enumerate(batches):
            batch = batch_at(seq + offset)
            encoded.append((seq + offset, encode_payload(batch), batch.count))
        for group in groups_within(encoded, self.spool.max_bytes):
            size = sum(len(payload) for _, payload, _ in group)
            if self.spool.overflow is OverflowPolicy.BLOCK:
                while self.spool.would_overflow(size):
                    await self._wait_change()
            counts = dict(self.spool.would_drop(size))
            dropped_seqs, waited = await append_when_room(self.spool, group, self._wait_room)
            self.counters.disk_full_waits += int(waited)
            for dropped in dropped_seqs:
                count = counts.get(dropped, 0)
                self.counters.dropped_batches += 1
                self.counters.dropped_observations += count
                if dropped <= self._max_sent_seq:  # in flight: an ack may still prove it
                    self._dropped_in_flight[dropped] = count
            self.counters.batches += len(group)
            self.counters.observations += sum(count for _, _, count in group)
            self.counters.payload_bytes += size
            self._changed.set()

    async def _wait_room(self) -> None:
        """Until something changed (an ACK may have freed a segment) or the retry time."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DISK_FULL_RETRY_S):
                await self._wait_change()

    async def drain(self, timeout: float) -> bool:
        """Wait until every spooled batch is acknowledged; False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                while len(self.spool):
                    await self._wait_change()
        except TimeoutError:
            return False
        return True

    def stop(self) -> None:
        """End the delivery loop (after the current session says BYE)."""
        self._stopping = True
        self._changed.set()

    # --- delivery loop ----------------------------------------------------

    async def wait_acked(self, at_most: int) -> None:
        """Wait while the gateway is connected and more than ``at_most`` batches are
        spooled: a producer ``as fast as acknowledged`` keeps this far ahead."""
        while self.connected and len(self.spool) > at_most and not self._stopping:
            await self._wait_change()

    async def run(self) -> None:
        """Connect, pump, reconnect with backoff, until ``stop()``."""
        loop = asyncio.get_running_loop()

        def durable() -> None:  # --spool-fsync always: the syncer has more on disk
            loop.call_soon_threadsafe(self._changed.set)

        self.spool.on_durable(durable)
        while not self._stopping:
            client = GatewayClient(
                self.hello,
                self.key,
                on_ack=self._acked,
                on_error=self._refused,
                on_latency=self._on_ack_latency,
            )
            self.client = client
            if self._on_client is not None:
                self._on_client(client)
            try:
                async with open_session(
                    self.gateway,
                    client,
                    tickets=self.tickets,
                    early_data=True,  # HELLO rides 0-RTT on a resumed session
                    settings=self.transport,
                ) as (link, welcome):
                    self._ignore_acks = False
                    if self._numbers_taken(welcome):
                        client.close("starting a new sequence epoch")
                        continue  # reconnect at once with the new epoch
                    self.reconnect.succeeded()
                    self.gateways.connected()
                    self.connected = True
                    self.counters.connects += 1
                    self.counters.resumed += int(link.resumed)
                    self.counters.early_data += int(link.early_data_accepted)
                    released = self._release_through(welcome.resume_seq)
                    logger.info(
                        "connected to gateway",
                        extra={
                            "gateway_id": welcome.gateway_id,
                            "credit": welcome.credit,
                            "resume_seq": welcome.resume_seq,
                            "released": released,
                            "spooled": len(self.spool),
                            "resumed_tls": link.resumed,
                            "early_data": link.early_data_accepted,
                        },
                    )
                    await self._pump(client)
            except SpoolError as exc:
                logger.error(
                    "spool failed; delivery stops",
                    extra={"spool": str(self.spool.path), "error": str(exc)},
                )
                raise
            except AuthRefusedError as exc:  # retrying cannot help: stop, say why once
                self.refused = exc
                logger.error(
                    "gateway refused this edge; delivery stops",
                    extra={
                        "gateway": str(self.gateway),
                        "code": code_name(exc.code),
                        "error": str(exc),
                        "spooled": len(self.spool),
                    },
                )
                raise
            except RedirectedError as exc:
                if self._stopping:
                    break
                to = exc.redirect
                sender = self.gateway
                follow = self.gateways.redirected(to)
                self.counters.redirects += 1
                logger.info(
                    "gateway sent this edge to the gateway that owns it",
                    extra={
                        "gateway_id": to.gateway_id,
                        "gateway": f"{to.host}:{to.port}",
                        "reason": to.reason,
                        "following": follow,
                    },
                )
                if not follow:
                    await self._back_off(exc, sender)
            except (ConnectionError, OSError, TimeoutError, SessionEndedError) as exc:
                if self._stopping:
                    break
                failed = self.gateway
                self.gateways.failed()
                await self._back_off(exc, failed)
            finally:
                self.connected = False
                self._dropped_in_flight.clear()  # never acked now: they stay dropped

    async def _back_off(self, exc: BaseException, failed: GatewayAddress) -> None:
        """Count the failure at ``failed``, say so (and where the next attempt goes), wait
        the backoff (or until stopped)."""
        delay = self.reconnect.failed()
        self.counters.retries += 1
        logger.warning(
            "gateway unreachable; spooling and retrying",
            extra={
                "gateway": str(failed),
                "next_gateway": str(self.gateway),
                "error": str(exc) or type(exc).__name__,
                "retry_in_s": round(delay, 3),
                "attempt": self.reconnect.attempt,
                "spooled": len(self.spool),
            },
        )
        self.connected = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                while not self._stopping:
                    await self._wait_change()

    async def _pump(self, client: GatewayClient) -> None:
        """Send spooled batches in seq order as credit allows, until the session ends."""
        last_sent = 0
        while True:
            if self._stopping:  # the runner drained (or gave up on) the spool already
                client.close("edge stopping")
                await asyncio.sleep(0.05)  # let the BYE leave before the connection closes
                return
            client.raise_if_closed()
            if client.stalled(time.monotonic(), self.ack_timeout_s):
                client.abandon(f"no ack for {self.ack_timeout_s:g} s")
                raise SessionEndedError(client.closed_reason or "stalled")
            batch_limit = max(1, min(client.session.credit, 256))
            pending = self.spool.pending(after_seq=last_sent, limit=batch_limit)
            if not pending or client.session.credit <= 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(_WATCHDOG_S):
                        await self._wait_change(client)
                continue
            try:
                self.spool.mark_sent(pending[-1][0])  # persisted before any of them leaves
            except SpoolDiskFull:
                await self._wait_room()  # not recorded, so not sent; the tick loop says why
                continue
            for seq, payload in pending:
                if client.session.credit <= 0 or client.closed_reason is not None:
                    break  # wait for acks (and watch the gateway) in the outer loop
                last_sent = seq
                try:
                    await client.send_batch(payload, seq=seq, count=self.spool.count(seq))
                except LocalProtocolError as exc:  # e.g. more agents than the gateway takes
                    self.spool.quarantine(seq, QuarantineReason.UNSENDABLE, str(exc))
                    continue
                if seq <= self._max_sent_seq:
                    self.counters.resent_batches += 1
                self._max_sent_seq = max(self._max_sent_seq, seq)
                # Its packets leave now, and the loop reads what arrived (ACKs) before the
                # next batch; the next is queued once QUIC has sent most of this one, so a
                # batch (or a state frame) never waits behind a deep queue of others.
                client.transmit_now()
                try:
                    async with asyncio.timeout(_WATCHDOG_S):
                        await client.wait_send_backlog(SEND_BACKLOG_BYTES)
                except TimeoutError:
                    break  # nothing leaves: check on the gateway in the outer loop
                await asyncio.sleep(0)

    def _acked(self, ack: Ack, through: bool) -> None:
        if self._ignore_acks:
            return
        if through:  # cumulative: everything up to ack.seq is durable at the gateway
            self._release_through(ack.seq)
            self._changed.set()
            return
        held = self.spool.count(ack.seq)
        if self.spool.ack(ack.seq):
            self.counters.acked_batches += 1
            self.counters.acked_observations += held
        elif (count := self._dropped_in_flight.pop(ack.seq, None)) is not None:
            # dropped from the spool while in flight, yet the gateway has it: delivered
            self.counters.dropped_batches -= 1
            self.counters.dropped_observations -= count
            self.counters.acked_batches += 1
            self.counters.acked_observations += count
        self._changed.set()

    def _numbers_taken(self, welcome: Welcome) -> bool:
        """The gateway holds numbers of this epoch the spool never sent (a copy of the
        spool runs elsewhere, or it was restored or rolled back): start a new epoch."""
        if FEATURE_SEQ_EPOCH not in welcome.features:
            return False
        if welcome.resume_seq <= self.spool.sent_through:
            return False
        self._new_epoch(
            f"the gateway holds seq {welcome.resume_seq} of this epoch, this spool sent"
            f" {self.spool.sent_through} at most"
        )
        return True

    def _new_epoch(self, why: str) -> None:
        """Another sender uses this spool's numbers: the spool starts a new epoch, the
        next HELLO announces it; nothing this session acknowledges counts any more."""
        old = self.spool.seq_epoch
        epoch = self.spool.start_new_epoch()
        self.hello = dataclasses.replace(self.hello, seq_epoch=epoch)
        self.counters.seq_epochs_started += 1
        self._ignore_acks = True
        logger.warning(
            "sequence numbers shared with another sender: starting a new seq_epoch",
            extra={"spool": str(self.spool.path), "old": old, "seq_epoch": epoch, "why": why},
        )

    def _refused(self, error: Error) -> None:
        """The gateway refused batch ``error.seq`` for good (quarantine it), or says its
        number holds another batch (start a new epoch; the session is closing)."""
        if error.code == ErrorCode.SEQ_CONFLICT and FEATURE_SEQ_EPOCH in self.hello.features:
            self._new_epoch(f"SEQ_CONFLICT on seq {error.seq}: {error.message}")
            return
        if error.seq is None or error.code not in BATCH_REFUSED_CODES:
            return
        name = ErrorCode(error.code).name
        self.spool.quarantine(error.seq, QuarantineReason.REJECTED, f"{name}: {error.message}")

    def _quarantined(self, batch: QuarantinedBatch) -> None:
        """The spool moved ``batch`` aside: it will never be sent nor acknowledged."""
        self.counters.quarantined_batches += 1
        self.counters.quarantined_observations += batch.count
        if self._on_quarantine is not None:
            self._on_quarantine(batch)
        self._changed.set()

    def _release_through(self, seq: int) -> int:
        """The gateway holds everything up to ``seq`` durably: drop it from the spool."""
        for held in [k for k in self._dropped_in_flight if k <= seq]:
            count = self._dropped_in_flight.pop(held)
            self.counters.dropped_batches -= 1
            self.counters.dropped_observations -= count
            self.counters.acked_batches += 1
            self.counters.acked_observations += count
        observations = self.spool.count_through(seq)
        released = self.spool.ack_through(seq)
        self.counters.acked_batches += released
        self.counters.acked_observations += observations
        if released:
            self._changed.set()
        return released

    async def _wait_change(self, client: GatewayClient | None = None) -> None:
        self._changed.clear()
        if client is None:
            await self._changed.wait()
            return
        waiters = {
            asyncio.ensure_future(self._changed.wait()),
            asyncio.ensure_future(client.wait_change()),
        }
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
