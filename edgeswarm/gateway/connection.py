"""One peer's session at the gateway: feeds bytes to a sans-I/O ``Session``, acts on events.

Handshake: HELLO is checked against the peer registry, answered with a fresh
CHALLENGE; the AUTH signature over it admits the peer (WELCOME) or refuses it.
Observation batches are appended to the durable log and acknowledged only
once the log has committed them; each ACK extends the peer's credit. A peer
that speaks ``ack_through`` gets one cumulative ACK per commit group and turn
of the loop instead of one per batch.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time

from edgeswarm.identity import verify_signature
from edgeswarm.state import Writers
from edgeswarm.transport.api import SessionLink
from edgeswarm.wire import (
    FEATURE_ACK_THROUGH,
    FEATURE_HEAVY,
    FEATURE_MODULES,
    FEATURE_PLACEMENT,
    FEATURE_REDIRECT,
    FEATURE_REGISTRY,
    FEATURE_SEQ_EPOCH,
    FEATURE_STATE,
    NONCE_BYTES,
    Actions,
    AuthReceived,
    BlobChunk,
    BlobRequested,
    Challenge,
    CheckpointReceived,
    Error,
    ErrorCode,
    FrameType,
    HelloReceived,
    InferRequest,
    InferRequestReceived,
    InferResultReceived,
    LocalProtocolError,
    ModuleAssign,
    ModuleReportReceived,
    ObservationsReceived,
    PlacementRequested,
    ProtocolViolation,
    Redirect,
    RegistryChunk,
    RegistryFrameReceived,
    RegistryIndex,
    RegistryRequest,
    Role,
    Session,
    SessionClosed,
    SessionConfig,
    SessionState,
    StateSyncRequested,
    StateUpdate,
    StateUpdateReceived,
    StatusRequested,
    auth_message,
    code_name,
    encode_payload,
)
from edgeswarm.wire.codec import MAX_TEXT_CHARS

from .acks import Acknowledger
from .batch_answers import BatchAnswers
from .edge_sessions import Refused
from .handshake import welcome_for
from .log import LogRecordRejected, ObservationLogError
from .peers import Decision, PeerRegistryError
from .placement_edges import PlacementSession
from .services import GatewayServices
from .state_rights import state_rights

logger = logging.getLogger("edgeswarm.gateway")


class GatewayConnection(BatchAnswers):
    """Handler of one QUIC connection's session stream (a ``StreamHandler``)."""

    def __init__(self, gateway: GatewayServices) -> None:
        self._gateway = gateway
        config = gateway.config
        self.session = Session(
            SessionConfig(
                is_client=False,
                max_frame_bytes=config.max_frame_bytes,
                max_batch_agents=config.max_batch_agents,
                hello_timeout_s=config.hello_timeout_s,
                batch_arrays=False,  # the log stores payloads; nobody here reads the arrays
            ),
            now=time.monotonic(),
        )
        self._link: SessionLink | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._open = False
        self.peer_id: str | None = None
        self.role: Role | None = None
        self.public_key: bytes | None = None
        """The key the peer proved at AUTH; None before WELCOME."""
        self._decision: Decision | None = None
        self._acks = Acknowledger()
        self._flush_scheduled = False
        self._base = 0
        """An edge's batches are stored under ``base + seq`` (its sequence epoch's base)."""
        self.state_writers: Writers = frozenset()
        """Swarm-state writer ids this peer may write as (``state.ownership``)."""
        self.state_may_write = False
        """Whether this peer's role may change the swarm state."""
        self._log_failed_once = False
        """The log refused or failed a batch: the session is closing, append no more."""
        self._placement: PlacementSession | None = None
        """An edge's ASSIGN and CHECKPOINT frames, once WELCOME named feature placement."""

    # StreamHandler
    def connection_made(self, link: SessionLink) -> None:
        self._link = link
        self._gateway.connection_opened(self)
        self._arm_timer()

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        if data:
            self.session.receive_data(data, time.monotonic())
        self._process()
        if end_stream and not self.session.closed:
            self.session.close(ErrorCode.NO_ERROR, "stream ended")
            self._process()

    def connection_lost(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._session_ended()
        self._gateway.connection_closed(self)

    # internals
    def _process(self) -> None:
        gateway = self._gateway
        while (event := self.session.next_event()) is not None:
            match event:
                case ObservationsReceived(
                    seq=seq, tick=tick, count=count, size=size, payload=payload, agent_ids=ids
                ):
                    edge_id = self.edge_id
                    assert edge_id is not None  # the session admits OBS_BATCH from edges only
                    if self._log_failed_once:  # later frames of the same read: the edge
                        continue  # resends them with the refused one
                    durable = functools.partial(self._durable, seq=seq, count=count, size=size)
                    if self._placement is not None:  # its (agent, tick) record (rule 4)
                        self._placement.observed(tick, ids)
                    try:
                        gateway.observation_log.append_then(
                            edge_id,
                            self._base + seq,
                            tick,
                            count,
                            payload,
                            durable,
                            self._send_acks,
                        )
                    except LogRecordRejected as exc:
                        self._reject(seq, exc)
                    except ObservationLogError as exc:  # overloaded or closed: nothing queued
                        gateway.stats.log_refused(exc.reason)
                        self._log_failed(seq, exc)
                case HelloReceived():
                    self._on_hello()
                case AuthReceived(auth=auth):
                    self._on_auth(auth.signature)
                case StatusRequested():
                    self.session.send(gateway.stats.status(time.monotonic()))
                case StateSyncRequested() | StateUpdateReceived():
                    for frame in gateway.state.receive(self, event):
                        self.session.send(frame)
                case InferRequestReceived(request=request):
                    gateway.heavy.submit(self, request)  # the session admits it from edges only
                case InferResultReceived(result=result):
                    gateway.heavy.node_result(self, result)  # from inference nodes only
                case BlobRequested() | ModuleReportReceived():  # from edges only
                    gateway.modules.receive(self, event)
                case RegistryFrameReceived(frame=frame):  # from peer gateways only
                    gateway.replication.receive(self, frame)
                case PlacementRequested(request=request):
                    self.session.send(gateway.placement.answer(request))  # admins only
                case CheckpointReceived(checkpoint=checkpoint) if self._placement is not None:
                    self._placement.checkpoint(checkpoint)  # edges with feature placement
                case ProtocolViolation(error=error):
                    gateway.stats.protocol_error(self.peer_id, error.error_code.name)
                    self._log(
                        logging.WARNING,
                        "protocol violation",
                        code=error.error_code.name,
                        error=str(error),
                        fatal=error.fatal,
                    )
                case SessionClosed(code=code, reason=reason, by_peer=by_peer):
                    name = code_name(code)
                    self._log(
                        logging.INFO, "session closed", code=name, reason=reason, by_peer=by_peer
                    )
                    self._session_ended()
                case _:
                    pass
        self._flush()

    def _on_hello(self) -> None:
        hello = self.session.peer_hello
        assert hello is not None
        try:
            decision = self._gateway.peers.check(hello)
        except PeerRegistryError as exc:
            self._registry_failed(exc)
            return
        if not decision.allowed:
            self._refuse(decision.code, decision.reason)
            return
        self._decision = decision
        self.session.challenge(
            Challenge(nonce=os.urandom(NONCE_BYTES), gateway_id=self._gateway.config.gateway_id)
        )

    def _on_auth(self, signature: bytes) -> None:
        gateway, hello, challenge = (
            self._gateway,
            self.session.peer_hello,
            self.session.sent_challenge,
        )
        assert hello is not None
        assert challenge is not None
        assert self._decision is not None
        message = auth_message(nonce=challenge.nonce, gateway_id=challenge.gateway_id, hello=hello)
        if not verify_signature(hello.public_key, signature, message):
            self._refuse(ErrorCode.AUTH_FAILED, "signature does not match the challenge")
            return
        try:  # decided again with the enrollment: the id may be taken, the token used up
            gateway.peers.admit(hello, self._decision)
        except PeerRegistryError as exc:
            if type(exc) is PeerRegistryError:  # the file, not the peer
                self._registry_failed(exc)
            else:
                self._refuse(exc.error_code, str(exc))
            return
        is_edge = hello.role is Role.EDGE
        if is_edge and FEATURE_REDIRECT in hello.features:
            redirect = gateway.ring.redirect_for(hello.peer_id, "owner")
            if redirect is not None:  # another gateway owns this edge: nothing registered here
                self.redirect(redirect)
                return
        resume_seq = 0
        if is_edge:
            epoch = hello.seq_epoch if FEATURE_SEQ_EPOCH in hello.features else None
            admitted = gateway.edge_sessions.admit(self, hello.peer_id, epoch or 0, peer=self.peer)
            if isinstance(admitted, Refused):
                self._refuse(admitted.code, admitted.reason)
                return
            self._base, resume_seq = admitted.base, admitted.resume_seq
            gateway.placement.edge_connected(hello.peer_id)
        self._acks.credit_limit = gateway.config.credit_window if is_edge else 0
        welcome = welcome_for(
            hello, gateway.config, credit=self._acks.credit_limit, resume_seq=resume_seq
        )
        self.session.accept(welcome)
        heavy = FEATURE_HEAVY in welcome.features
        self.peer_id, self.role, self._open = hello.peer_id, hello.role, True
        self.public_key = hello.public_key
        if self._link is not None:
            self._link.mark_authenticated()  # out of the transport's pre-auth budget
        if FEATURE_STATE in self.session.features:  # the state service logs it by peer_id
            self.state_writers, self.state_may_write = state_rights(
                hello, gateway.peers, gateway.stats
            )
            self.session.send(gateway.state.sync_request(self))
        self._acks.cumulative = FEATURE_ACK_THROUGH in self.session.features
        if FEATURE_MODULES in self.session.features and is_edge:
            gateway.modules.attach(self)
        if FEATURE_REGISTRY in self.session.features and hello.role is Role.GATEWAY:
            gateway.replication.attach(self)
        if heavy and hello.role is Role.INFERENCE:
            gateway.heavy.node_joined(self, hello.peer_id, hello.models)
        if is_edge and FEATURE_PLACEMENT in self.session.features:
            self._placement = gateway.placement_edges.session(
                hello.peer_id, self.session, self._flush_soon
            )
        gateway.stats.session_opened(
            hello.peer_id, hello.role.value, hello.agents, address=self.peer, at=time.time()
        )
        logger.info(
            "session opened",
            extra={
                "peer_id": hello.peer_id,
                "role": hello.role.value,
                "agents": hello.agents,
                "peer": self.peer,
                "enrolled": self._decision.enroll_token is not None,
            },
        )

    def _registry_failed(self, error: PeerRegistryError) -> None:
        """The peer registry cannot be read or written: refuse with INTERNAL_ERROR."""
        self._gateway.stats.storage_error("peers")
        logger.error(
            "peer registry failed",
            extra={"path": str(self._gateway.peers.path), "peer": self.peer, "error": str(error)},
        )
        self._refuse(ErrorCode.INTERNAL_ERROR, "the gateway cannot read its peer registry now")

    def _refuse(self, code: ErrorCode, reason: str) -> None:
        hello = self.session.peer_hello
        self._gateway.stats.peer_refused(code.name)
        who = hello.peer_id if hello else None
        extra = {"peer_id": who, "peer": self.peer, "code": code.name, "reason": reason}
        logger.warning("peer refused", extra=extra)
        self.session.refuse(code, reason)

    @property
    def edge_id(self) -> str | None:
        """The peer's id once welcomed as an edge (only edges send batches), else None."""
        return self.peer_id if self.role is Role.EDGE else None

    @property
    def declared_agents(self) -> int:
        """Agents the peer said it runs (HELLO ``agents``; 0 before HELLO)."""
        hello = self.session.peer_hello
        return hello.agents if hello is not None else 0

    @property
    def state_peer_id(self) -> str:
        """Peer id for the state service's logs."""
        return self.peer_id or self.peer

    def send_state_update(self, update: bytes) -> None:
        """Send a STATE_UPDATE (state service broadcast); flushed at the end of this turn."""
        if self.session.closed:
            return
        self.session.send(StateUpdate(update=update))
        self._flush_soon()

    def send_module_frame(self, frame: ModuleAssign | BlobChunk | Error) -> None:
        """Module distribution's frame for this edge (``module_distribution.py``)."""
        if not self.session.closed:
            self.session.send(frame)
            self._flush_soon()

    @property
    def registry_peer_id(self) -> str:
        """The peer gateway's id, for registry replication's logs."""
        return self.peer_id or self.peer

    def send_registry_frame(self, frame: RegistryIndex | RegistryRequest | RegistryChunk) -> None:
        """Registry replication's frame for this peer gateway (``module_replication.py``)."""
        if not self.session.closed:
            self.session.send(frame)
            self._flush_soon()

    def send_actions(self, actions: Actions) -> bool:
        """Send ACTIONS to this edge: as one QUIC datagram when it fits, else on the stream.

        True: it left as a datagram (no prefix; unreliable and unordered, so
        only for actions whose next update supersedes them). False: it was
        queued on the session stream (reliable, ordered), because the edge did
        not negotiate datagrams or the frame is larger than one datagram.
        Raises ``LocalProtocolError`` before WELCOME or to a non-edge peer.
        """
        link = self._link
        if (
            not self._open
            or self.session.state is not SessionState.READY
            or self.role is not Role.EDGE
        ):
            raise LocalProtocolError("ACTIONS go only to edges in a READY session")
        payload = encode_payload(actions)  # once: the datagram's or the stream's
        limit = link.max_datagram_payload if link is not None else None
        fits = link is not None and limit is not None and len(payload) <= limit
        if fits and link is not None and link.send_datagram(payload):
            return True
        count = int(actions.agent_ids.shape[0])  # checked against max_batch_agents
        self.session.send_encoded(FrameType.ACTIONS, payload, count=count)
        self._flush_soon()
        return False

    def send_result(self, result: Actions) -> None:
        """A heavy-lane answer to this edge (``LaneRunner``'s ``ResultSink``)."""
        self.send_actions(result)

    def send_batch(self, request: InferRequest) -> None:
        """A batch for this inference node (``LaneRunner``'s ``NodeChannel``); it leaves
        at the end of this loop turn. Raises ``ConnectionError`` once the session closed."""
        if self.session.closed:
            raise ConnectionError("the node's session is closed")
        self.session.send(request)
        self._flush_soon()

    @property
    def peer(self) -> str:
        """The remote address, ``host:port``."""
        return self._link.peer if self._link is not None else "?"

    def _log(self, level: int, message: str, **fields: object) -> None:
        """Log ``message`` with the peer's id (also as ``edge_id`` for an edge) and address."""
        who = {"peer_id": self.peer_id, "peer": self.peer}
        if self.edge_id is not None:
            who["edge_id"] = self.edge_id
        logger.log(level, message, extra={**who, **fields})

    def replace(self) -> None:
        """A newer session of this edge authenticated: BYE ``SESSION_REPLACED``."""
        if not self.session.closed:
            self.session.close(ErrorCode.SESSION_REPLACED, "a newer session of this edge id")
            self._process()

    def redirect(self, redirect: Redirect) -> bool:
        """REDIRECT the edge to its gateway, then BYE ``REDIRECTED`` (after AUTH, or in
        READY with feature ``redirect``: acks first). False when the edge cannot take one."""
        ready = self.session.state is SessionState.READY
        if self.session.closed or (ready and FEATURE_REDIRECT not in self.session.features):
            return False
        if ready:
            self._send_cumulative_ack()
        self.session.send(redirect)
        self.session.close(ErrorCode.REDIRECTED, f"owned by gateway {redirect.gateway_id}")
        self._gateway.ring.redirected(redirect)
        hello = self.session.peer_hello
        self._log(
            logging.INFO,
            "edge redirected to the gateway that owns it",
            peer_id=hello.peer_id if hello is not None else None,
            gateway_id=redirect.gateway_id,
            gateway=f"{redirect.host}:{redirect.port}",
            reason=redirect.reason,
        )
        self._process()
        return True

    def revoke(self, reason: str) -> None:
        """The peer's key left the registry (``revocation.py``): ERROR and BYE
        ``KEY_REVOKED``. Batches it sent before stay stored and acknowledged."""
        if self.session.closed:
            return
        self._send_cumulative_ack()  # what committed before is durable: say so first
        self.session.send(Error(code=ErrorCode.KEY_REVOKED, message=reason[:MAX_TEXT_CHARS]))
        self.session.close(ErrorCode.KEY_REVOKED, reason[:MAX_TEXT_CHARS])
        self._process()

    def _session_ended(self) -> None:
        self._gateway.state.detach(self)
        self._gateway.modules.detach(self)
        self._gateway.replication.detach(self)
        if self._placement is not None:
            self._placement.ended()
        if self.role is Role.INFERENCE:
            self._gateway.heavy.node_left(self)
        elif self.role is Role.EDGE:
            self._gateway.heavy.origin_gone(self)
        if self.edge_id is not None:
            self._gateway.edge_sessions.ended(self, self.edge_id)
        if self._open and self.peer_id is not None and self.role is not None:
            self._open = False
            self._gateway.stats.session_closed(self.peer_id, self.role.value)

    def _flush_soon(self) -> None:
        """Flush at the end of this loop turn (once, however many frames are queued)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._send_cumulative_ack()
        data = self.session.data_to_send()
        closed = self.session.closed
        if self._link is not None and (data or closed):
            self._link.send(data, end_stream=closed)
            if closed:
                self._link.close_connection(reason="session closed")
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.session.get_timer()
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(time.monotonic())
        self._process()

    def shutdown(self) -> None:
        """Say BYE (the gateway is going away)."""
        if not self.session.closed:
            self.session.close(ErrorCode.SHUTTING_DOWN, "gateway shutting down")
            self._process()
