"""The client side of one session with a gateway, whoever the client is.

``GatewayClient`` is the ``StreamHandler`` of the QUIC adapter for an edge's
uplink, an admin command and a peer gateway's link alike; it owns the client
``Session`` and turns its events into awaitable state: the handshake (it
signs the gateway's challenge with the peer's key), the credit the gateway
granted (back-pressure), ack latencies, actions to apply, status, and the
shared-state frames, which it hands to a ``StateHandler``, and module distribution's
frames, which it hands to its ``module_handler``. Actions may also arrive as QUIC
datagrams.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from edgeswarm.identity import KeyPair
from edgeswarm.telemetry import LatencyHistogram
from edgeswarm.transport.api import SessionLink
from edgeswarm.wire import (
    AUTH_REFUSAL_CODES,
    BATCH_REFUSED_CODES,
    FEATURE_ACK_THROUGH,
    FEATURE_STATE,
    Ack,
    AckReceived,
    Actions,
    ActionsReceived,
    AgentsAssigned,
    Assign,
    Auth,
    BlobChunkReceived,
    BlobRequest,
    ChallengeReceived,
    Checkpoint,
    Error,
    ErrorCode,
    ErrorReceived,
    Frame,
    FrameType,
    Hello,
    InferRequest,
    InferRequestReceived,
    InferResult,
    ModuleReport,
    ModulesAssigned,
    PlacementReplied,
    PlacementReply,
    PlacementRequest,
    ProtocolViolation,
    Redirect,
    Redirected,
    RegistryChunk,
    RegistryFrameReceived,
    RegistryIndex,
    RegistryRequest,
    Session,
    SessionClosed,
    SessionConfig,
    StateSyncRequest,
    StateSyncRequested,
    StateUpdate,
    StateUpdateReceived,
    Status,
    StatusReceived,
    StatusRequest,
    Welcome,
    Welcomed,
    auth_message,
    code_name,
    decode_payload,
)
from edgeswarm.wire.errors import RemoteProtocolError

from .errors import AuthRefusedError, RedirectedError, SessionEndedError
from .refusals import REFUSAL_HINTS

logger = logging.getLogger("edgeswarm.client")


@dataclass
class ClientCounters:
    """What a session received besides acks (the uplink counts deliveries)."""

    errors_received: int = 0
    """ERROR frames from the gateway."""
    datagram_actions: int = 0
    """ACTIONS that came as QUIC datagrams."""


class StateHandler(Protocol):
    """Who keeps a swarm document in sync over this session: an edge's ``StateLink``,
    an admin's ``StateMirror``, a gateway's ``PeerGatewayLink``."""

    def session_ready(self, client: GatewayClient) -> None:
        """WELCOME arrived and the ``state`` feature was negotiated: send STATE_SYNC."""

    def state_received(
        self, client: GatewayClient, event: StateSyncRequested | StateUpdateReceived
    ) -> None:
        """The gateway sent STATE_SYNC or STATE_UPDATE."""

    def session_ended(self, client: GatewayClient) -> None:
        """The session is over; forget what the peer held."""


class GatewayClient:
    """Client of one gateway session (a ``StreamHandler``).

    ``on_ack(ack, through)`` is called for every ACK; ``through`` is True when the
    session speaks ``ack_through``: the ACK covers every batch up to ``ack.seq``.
    ``on_error(error)`` is called for every ERROR; one whose ``seq`` names a sent
    batch with a code of ``BATCH_REFUSED_CODES`` refuses that batch for good (no
    ACK will come for it: it is no longer in flight). ``on_latency(seconds)`` is
    called with each acknowledged batch's send-to-ack time (the edge's histogram).
    Once the gateway closes the session with a code of ``AUTH_REFUSAL_CODES``,
    waiting on the session raises :class:`AuthRefusedError`.
    """

    def __init__(
        self,
        hello: Hello,
        key: KeyPair,
        *,
        on_ack: Callable[[Ack, bool], None] | None = None,
        on_error: Callable[[Error], None] | None = None,
        on_latency: Callable[[float], None] | None = None,
    ) -> None:
        if hello.public_key != key.public_key:
            raise ValueError("HELLO must carry the public key of the key pair that signs")
        self.hello = hello
        self._key = key
        self._on_ack = on_ack
        self._on_error = on_error
        self._on_latency = on_latency
        self.session = Session(SessionConfig(is_client=True), now=time.monotonic())
        self.counters = ClientCounters()
        self.latency = LatencyHistogram()
        self.actions: deque[Actions] = deque(maxlen=1024)
        """ACTIONS to impose on agents, oldest first (plain ones: no ``request_id``)."""
        self.results: deque[tuple[float, Actions]] = deque()
        """Heavy-lane results (ACTIONS with a ``request_id``) with when they arrived
        (monotonic seconds), oldest first: the edge's
        lane takes them all every tick; the gateway sends at most WELCOME's
        ``infer_window`` unanswered, so this stays bounded."""
        self.infer_handler: Callable[[InferRequest], None] | None = None
        """An inference node's: called with each INFER_REQUEST the gateway sends."""
        self.welcome: Welcome | None = None
        self.closed_reason: str | None = None
        self.closed_code: int | None = None
        """The code of the gateway's BYE, once it closed the session."""
        self.redirect: Redirect | None = None
        """The gateway's REDIRECT (feature ``redirect``): where the edge belongs."""
        self._link: SessionLink | None = None
        self._in_flight: dict[int, float] = {}
        """Batches sent in this session and not acknowledged: seq -> when sent."""
        self._changed = asyncio.Event()
        self._status: asyncio.Future[Status] | None = None
        self._placement: dict[int, asyncio.Future[PlacementReply]] = {}
        self.last_progress = time.monotonic()
        """When the gateway last showed it is alive (welcome, ack); for liveness checks."""
        self.state_handler: StateHandler | None = None
        """Receives the shared-state frames; set it before the connection opens."""
        self.module_handler: (
            Callable[[GatewayClient, ModulesAssigned | BlobChunkReceived], None] | None
        ) = None
        """Receives module distribution's frames (an edge's ``ModuleUplink``)."""
        self.registry_handler: (
            Callable[[GatewayClient, RegistryIndex | RegistryRequest | RegistryChunk], None] | None
        ) = None
        """Receives registry replication's frames (a peer gateway link, feature ``registry``)."""
        self.assign_handler: Callable[[Assign], None] | None = None
        """An edge's (feature ``placement``): called with each ASSIGN part the gateway sends."""
        self.answered_handler: Callable[[float, int | None], None] | None = None
        """An edge's placement lease: called when the gateway answered a request, with
        when that request was sent (monotonic) and, for an ACK, the seq it acknowledges
        (None for WELCOME and STATUS)."""
        self.hello_sent_at = 0.0
        """When HELLO left (monotonic): WELCOME answers it."""

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet acknowledged."""
        return len(self._in_flight)

    # StreamHandler
    def connection_made(self, link: SessionLink) -> None:
        self._link = link
        self.hello_sent_at = time.monotonic()
        self.session.hello(self.hello)
        self._flush()

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        if data:
            self.session.receive_data(data, time.monotonic())
        self._process()
        if end_stream and self.closed_reason is None:
            self._ended("gateway ended the stream")

    def connection_lost(self, reason: str) -> None:
        self._ended(reason)

    def datagram_received(self, data: bytes) -> None:
        """ACTIONS may come as a QUIC datagram (one payload, no length prefix)."""
        try:
            frame = decode_payload(data)
        except RemoteProtocolError as exc:
            logger.warning("bad datagram from the gateway ignored", extra={"error": str(exc)})
            return
        if isinstance(frame, Actions):
            self._actions_arrived(frame)
            self.counters.datagram_actions += 1
            self._changed.set()  # a waiter (the node's, a test's) sees it now
        else:
            logger.warning("unexpected datagram ignored", extra={"frame": type(frame).__name__})

    # API
    async def wait_welcomed(self, timeout: float = 10.0) -> Welcome:
        """Wait until the gateway accepted our HELLO."""
        async with asyncio.timeout(timeout):
            while self.welcome is None:
                self._raise_if_closed()
                await self._wait_change()
        return self.welcome

    async def send_batch(self, payload: bytes, *, seq: int, count: int) -> None:
        """Send the encoded OBS_BATCH ``payload`` (batch ``seq``, ``count`` agents) as it
        is, as soon as the gateway's credit allows (``Session.send_encoded``)."""
        while self.session.credit <= 0:
            self._raise_if_closed()
            await self._wait_change()
        self._raise_if_closed()
        self.session.send_encoded(FrameType.OBS_BATCH, payload, count=count)
        self._in_flight[seq] = time.monotonic()
        self._flush()

    def transmit_now(self) -> None:
        """Send the packets of what was queued now, not at the end of this loop turn."""
        if self._link is not None:
            self._link.transmit_now()

    async def wait_send_backlog(self, at_most: int) -> None:
        """Until at most ``at_most`` bytes sent on the session wait in QUIC to leave."""
        if self._link is not None:
            await self._link.wait_send_backlog(at_most)

    async def drain(self, timeout: float) -> bool:
        """Wait until every sent batch is acknowledged; False on timeout or close."""
        try:
            async with asyncio.timeout(timeout):
                while self._in_flight:
                    self._raise_if_closed()
                    await self._wait_change()
        except (TimeoutError, SessionEndedError):
            return False
        return True

    async def request_status(self, timeout: float = 10.0) -> Status:
        """Ask the gateway for its status."""
        self._raise_if_closed()
        self._status = asyncio.get_running_loop().create_future()
        self.session.send(StatusRequest())
        self._flush()
        async with asyncio.timeout(timeout):
            return await self._status

    async def request_placement(
        self, op: str, args: dict[str, Any], timeout: float = 10.0
    ) -> PlacementReply:
        """Ask the gateway for one placement operation (feature ``placement``, role admin)."""
        self._raise_if_closed()
        request_id = len(self._placement) + 1
        future: asyncio.Future[PlacementReply] = asyncio.get_running_loop().create_future()
        self._placement[request_id] = future
        self.session.send(PlacementRequest(request_id=request_id, op=op, args=args))
        self._flush()
        async with asyncio.timeout(timeout):
            return await future

    def send_state(self, frame: StateSyncRequest | StateUpdate | Error) -> None:
        """Send a shared-state frame (or an ERROR about one) now; nothing once closed."""
        if self.session.closed or self.closed_reason is not None:
            return
        self.session.send(frame)
        self._flush()

    def send_module(self, frame: BlobRequest | ModuleReport) -> None:
        """Send a module distribution frame now (feature ``modules``); nothing once closed."""
        self._send_if_open(frame)

    def send_registry(self, frame: RegistryIndex | RegistryRequest | RegistryChunk) -> None:
        """Send a registry replication frame now (feature ``registry``); nothing once closed."""
        self._send_if_open(frame)

    def send_checkpoint(self, frame: Checkpoint) -> bool:
        """Send a CHECKPOINT now (feature ``placement``); False once closed (the next
        checkpoint replaces it: nothing to retry)."""
        return self._send_if_open(frame)

    def _send_if_open(self, frame: Frame) -> bool:
        if self.session.closed or self.closed_reason is not None:
            return False
        self.session.send(frame)
        self._flush()
        return True

    def send_infer(self, frame: InferRequest | InferResult) -> None:
        """Send a heavy-lane frame now (feature ``heavy``); raises ``SessionEndedError`` once
        closed and ``LocalProtocolError`` when the session may not send it."""
        self._raise_if_closed()
        self.session.send(frame)
        self._flush()

    def close(self, reason: str = "") -> None:
        """Say BYE."""
        if not self.session.closed:
            self.session.close(ErrorCode.NO_ERROR, reason)
            self._process()

    async def wait_change(self) -> None:
        """Return at the next event of the session (ack, close, ...)."""
        self._changed.clear()
        await self._changed.wait()

    # internals
    async def _wait_change(self) -> None:
        await self.wait_change()

    def _raise_if_closed(self) -> None:
        self.raise_if_closed()

    def raise_if_closed(self) -> None:
        """Raise :class:`AuthRefusedError` when the gateway refused this peer for good,
        :class:`SessionEndedError` when the session is over for another reason."""
        if self.closed_reason is None:
            return
        code = self.closed_code
        if code is not None and code in AUTH_REFUSAL_CODES:
            reason = self.closed_reason.removeprefix("gateway closed the session: ")
            hint = REFUSAL_HINTS.get(ErrorCode(code), "")
            raise AuthRefusedError(
                f"the gateway refused {self.hello.peer_id!r}: {reason}{hint}", code=code
            )
        if self.redirect is not None:
            raise RedirectedError(self.closed_reason, redirect=self.redirect)
        raise SessionEndedError(self.closed_reason, code=code)

    def stalled(self, now: float, timeout: float) -> bool:
        """Batches are outstanding and no ack came for ``timeout`` seconds."""
        return bool(self._in_flight) and now - self.last_progress > timeout

    def abandon(self, reason: str) -> None:
        """Give up on this session (the gateway stopped answering)."""
        self._ended(reason)

    def _ended(self, reason: str, code: int | None = None) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.closed_code = code
            for future in (self._status, *self._placement.values()):
                if future is not None and not future.done():
                    try:
                        self.raise_if_closed()
                    except (AuthRefusedError, SessionEndedError) as exc:
                        future.set_exception(exc)
            if self.state_handler is not None:
                self.state_handler.session_ended(self)
        self._changed.set()

    def _process(self) -> None:
        now = time.monotonic()
        while (event := self.session.next_event()) is not None:
            match event:
                case AckReceived(ack=ack):
                    self.last_progress = now
                    through = FEATURE_ACK_THROUGH in self.session.features
                    covered = [s for s in self._in_flight if s <= ack.seq] if through else [ack.seq]
                    newest_sent: float | None = None
                    for seq in covered:
                        sent = self._in_flight.pop(seq, None)
                        if sent is not None:
                            newest_sent = sent if newest_sent is None else max(newest_sent, sent)
                            self.latency.record(now - sent)
                            if self._on_latency is not None:
                                self._on_latency(now - sent)
                    if self._on_ack is not None:
                        self._on_ack(ack, through)
                    if self.answered_handler is not None:
                        self.answered_handler(
                            newest_sent if newest_sent is not None else float("-inf"), ack.seq
                        )
                case ChallengeReceived(challenge=challenge):
                    message = auth_message(
                        nonce=challenge.nonce, gateway_id=challenge.gateway_id, hello=self.hello
                    )
                    self.session.authenticate(Auth(signature=self._key.sign(message)))
                case Welcomed(welcome=welcome):
                    self.welcome = welcome
                    self.last_progress = now
                    if self.answered_handler is not None:
                        self.answered_handler(self.hello_sent_at, None)
                    if self.state_handler is not None and FEATURE_STATE in self.session.features:
                        self.state_handler.session_ready(self)
                case StateSyncRequested() | StateUpdateReceived():
                    if self.state_handler is not None:
                        self.state_handler.state_received(self, event)
                case ActionsReceived(actions=actions):
                    self._actions_arrived(actions)
                case ModulesAssigned() | BlobChunkReceived():
                    if self.module_handler is not None:
                        self.module_handler(self, event)
                case RegistryFrameReceived(frame=frame):
                    if self.registry_handler is not None:
                        self.registry_handler(self, frame)
                case InferRequestReceived(request=request):
                    if self.infer_handler is not None:
                        self.infer_handler(request)
                case Redirected(redirect=redirect):
                    self.redirect = redirect
                case AgentsAssigned(assign=assign):
                    if self.assign_handler is not None:
                        self.assign_handler(assign)
                case PlacementReplied(reply=reply):
                    waiter = self._placement.get(reply.request_id)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(reply)
                case StatusReceived(status=status):
                    if self._status is not None and not self._status.done():
                        self._status.set_result(status)
                case ErrorReceived(error=error):
                    self.counters.errors_received += 1
                    logger.warning(
                        "gateway reported an error",
                        extra={
                            "code": code_name(error.code),
                            "error": error.message,
                            "seq": error.seq,
                        },
                    )
                    if error.seq is not None and error.code in BATCH_REFUSED_CODES:
                        self._in_flight.pop(error.seq, None)  # refused: no ACK will come
                    if self._on_error is not None:
                        self._on_error(error)
                case ProtocolViolation(error=error):
                    logger.warning(
                        "gateway broke the protocol",
                        extra={"code": error.error_code.name, "error": str(error)},
                    )
                case SessionClosed(code=code, reason=reason, by_peer=by_peer):
                    if by_peer:
                        name = code_name(code)
                        detail = f"{name}: {reason}" if reason and reason != name else name
                        self._ended(f"gateway closed the session: {detail}", code)
                    else:
                        self._ended(f"we closed the session: {reason or code_name(code)}")
                case _:
                    pass
        self._changed.set()
        self._flush()

    def _actions_arrived(self, actions: Actions) -> None:
        if actions.request_id is None:
            self.actions.append(actions)
        else:
            self.results.append((time.monotonic(), actions))

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if self._link is not None and data:
            self._link.send(data, end_stream=self.session.closed)
