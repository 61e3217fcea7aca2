"""One side of a protocol v2 session, sans-I/O.

A ``Session`` owns no socket and no clock. The adapter feeds it received
bytes with ``receive_data``, sends whatever ``data_to_send`` returns, drains
``next_event`` and arms a timer from ``get_timer``; the application calls
``hello``/``accept``/``refuse``/``send``/``close``. Which frame may go which
way in which state is decided by the table in ``states.py``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .codec import (
    DEFAULT_MAX_BATCH_AGENTS,
    MAX_TEXT_CHARS,
    PREAUTH_MAX_FRAME_BYTES,
    decode_payload,
    encode_payload,
)
from .errors import (
    CreditExceeded,
    ErrorCode,
    LocalProtocolError,
    RemoteProtocolError,
    UnexpectedFrame,
    UnsupportedVersion,
)
from .events import (
    AckReceived,
    Event,
    HelloReceived,
    ObservationsReceived,
    ProtocolViolation,
    SessionClosed,
    Welcomed,
    frame_event,
)
from .frames import (
    FRAME_TYPES,
    PROTOCOL_VERSION,
    Ack,
    Actions,
    Auth,
    BatchHeader,
    Bye,
    Challenge,
    Error,
    Frame,
    FrameType,
    Hello,
    InferRequest,
    InferResult,
    ObservationBatch,
    Role,
    Welcome,
)
from .framing import DEFAULT_MAX_FRAME_BYTES, FrameReader, encode_prefix
from .states import (
    FEATURE_GATED,
    SENDER_ROLES,
    Direction,
    SessionState,
    Side,
    next_state,
    role_names,
)

DEFAULT_HELLO_TIMEOUT_S = 10.0
"""Seconds a client has to complete the handshake unless configured otherwise."""

_RECEIVED_TYPES: dict[type, FrameType] = {**FRAME_TYPES, BatchHeader: FrameType.OBS_BATCH}
"""Frame type of everything ``decode_payload`` returns (``BatchHeader``: an OBS_BATCH)."""


@dataclass(frozen=True, kw_only=True)
class SessionConfig:
    """Settings of one session."""

    is_client: bool
    """True for the side that opened the stream (edge or admin), False for the gateway."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """Largest payload accepted from the peer (and sent to it)."""
    max_batch_agents: int = DEFAULT_MAX_BATCH_AGENTS
    """Largest number of agents accepted in one OBS_BATCH or ACTIONS frame."""
    hello_timeout_s: float = DEFAULT_HELLO_TIMEOUT_S
    """Server: seconds the client has to complete the handshake (HELLO to WELCOME)."""
    batch_arrays: bool = True
    """Build the arrays of each OBS_BATCH received (``ObservationsReceived.batch``);
    False checks every batch as strictly but leaves ``batch`` None: for a
    receiver that stores payloads and never reads the arrays (the gateway)."""


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else text[: MAX_TEXT_CHARS - 3] + "..."


class Session:
    """One side of a session: frames in and out, state, events and the hello timer."""

    def __init__(self, config: SessionConfig, *, now: float) -> None:
        self.config = config
        """The settings this session was made with."""
        self.peer_hello: Hello | None = None
        """Server: the client's HELLO, once received."""
        self.welcome: Welcome | None = None
        """The WELCOME of this session: received (client) or sent (server)."""
        self.local_hello: Hello | None = None
        """Client: the HELLO we sent."""
        self.sent_challenge: Challenge | None = None
        """Server: the CHALLENGE we sent."""
        self._side = Side.CLIENT if config.is_client else Side.SERVER
        self._state = SessionState.START if config.is_client else SessionState.AWAIT_HELLO
        self._reader = FrameReader(min(config.max_frame_bytes, PREAUTH_MAX_FRAME_BYTES))
        """Until READY, frames are read under the handshake's limits (states.py, rule 8)."""
        self._max_batch_agents = config.max_batch_agents
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        self._hello_deadline: float | None = (
            None if config.is_client else now + config.hello_timeout_s
        )
        self._credit_limit = 0
        self._batches = 0
        self.features: frozenset[str] = frozenset()
        """Features negotiated for this session (in both HELLO and WELCOME); empty before."""

    # --- inspection ------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """Current state of this side."""
        return self._state

    @property
    def closed(self) -> bool:
        """Whether the session is over (state ``CLOSED``)."""
        return self._state is SessionState.CLOSED

    @property
    def is_client(self) -> bool:
        """Whether this is the client side."""
        return self._side is Side.CLIENT

    @property
    def credit(self) -> int:
        """OBS_BATCH frames that may still be sent in this session under the granted credit.

        Credit is cumulative: WELCOME and every ACK carry the total number of
        batches the client may send in the session; it never decreases.
        """
        return max(0, self._credit_limit - self._batches)

    # --- application calls -----------------------------------------------

    def hello(self, hello: Hello) -> None:
        """Client: queue our HELLO (``START`` -> ``AWAIT_CHALLENGE``)."""
        if hello.version != PROTOCOL_VERSION:
            raise LocalProtocolError(f"this implementation speaks version {PROTOCOL_VERSION}")
        self._send(hello)
        self.local_hello = hello

    def challenge(self, challenge: Challenge) -> None:
        """Server: ask the client to prove its key (``HELLO_RECEIVED`` -> ``AWAIT_AUTH``)."""
        self._send(challenge)
        self.sent_challenge = challenge

    def authenticate(self, auth: Auth) -> None:
        """Client: answer the CHALLENGE (``CHALLENGED`` -> ``AWAIT_WELCOME``)."""
        self._send(auth)

    def accept(self, welcome: Welcome) -> None:
        """Server: admit the authenticated client with WELCOME (``AUTH_RECEIVED`` -> ``READY``)."""
        if welcome.version != PROTOCOL_VERSION:
            raise LocalProtocolError(f"this implementation speaks version {PROTOCOL_VERSION}")
        asked = frozenset(self.peer_hello.features) if self.peer_hello is not None else frozenset()
        if not asked.issuperset(welcome.features):
            raise LocalProtocolError("WELCOME may only name features the client's HELLO named")
        self._send(welcome)
        self.welcome = welcome
        self.features = frozenset(welcome.features)
        self._hello_deadline = None
        self._credit_limit = welcome.credit
        # Enforce what we announced when it is stricter than our configuration.
        self._reader.max_frame_bytes = min(self.config.max_frame_bytes, welcome.max_frame_bytes)
        self._max_batch_agents = min(self.config.max_batch_agents, welcome.max_batch_agents)

    def refuse(self, code: int, message: str) -> None:
        """Server: refuse the client's HELLO: ERROR, then BYE, then ``CLOSED``."""
        if self._side is not Side.SERVER or self._state not in (
            SessionState.HELLO_RECEIVED,
            SessionState.AUTH_RECEIVED,
        ):
            raise LocalProtocolError(f"refuse() is not allowed in state {self._state.name}")
        self._send(Error(code=int(code), message=_clip(message)))
        self._end(int(code), message)

    def send(self, frame: Frame) -> None:
        """Queue any frame but HELLO and WELCOME; BYE is the same as ``close()``.

        Raises ``LocalProtocolError`` when the frame is not allowed now.
        """
        if isinstance(frame, Hello | Welcome | Challenge | Auth):
            raise LocalProtocolError(
                "use hello(), challenge(), authenticate() and accept() for the handshake"
            )
        if isinstance(frame, Bye):
            if self._state is SessionState.CLOSED:
                raise LocalProtocolError("the session is closed")
            self.close(frame.code, frame.reason)
            return
        self._send(frame)

    def send_encoded(self, frame_type: FrameType, payload: bytes, *, count: int) -> None:
        """Queue an OBS_BATCH or ACTIONS encoded beforehand (``encode_payload``), byte for byte.

        For a sender that has the frame encoded already (an edge's spool; actions that did
        not fit a datagram): it is not decoded nor encoded again. ``count`` is its number
        of agents; the state, the role, the agent and size limits and the credit are
        checked as :meth:`send` checks a frame. Raises ``LocalProtocolError``.
        """
        if frame_type not in (FrameType.OBS_BATCH, FrameType.ACTIONS):
            raise LocalProtocolError(f"{frame_type.name} is sent as a frame, not encoded")
        self._queue(frame_type, payload, self._allowed(frame_type, count))

    def close(self, code: int = ErrorCode.NO_ERROR, reason: str = "") -> None:
        """Queue BYE and go ``CLOSED``; emits ``SessionClosed``. Does nothing when closed."""
        if self._state is SessionState.CLOSED:
            return
        self._end(int(code), reason)

    # --- adapter calls -----------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> None:
        """Process bytes received on the session stream."""
        if self.closed:
            return
        if self._hello_deadline is not None and now >= self._hello_deadline:
            self.handle_timer(now)
            return
        self._reader.feed(data)
        while not self.closed:
            try:
                payload = self._reader.next_payload()
                if payload is None:
                    return
                frame = decode_payload(
                    payload,
                    max_batch_agents=self._max_batch_agents,
                    batch_arrays=self.config.batch_arrays,
                    preauth=self._state is not SessionState.READY,
                )
                self._receive(frame, payload)
            except RemoteProtocolError as exc:
                self._violation(exc)

    def next_event(self) -> Event | None:
        """The oldest event not handed out yet, or None."""
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        """Every byte queued since the last call."""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must be called next, or None."""
        return self._hello_deadline

    def handle_timer(self, now: float) -> None:
        """Server: close the session with HELLO_TIMEOUT if the hello deadline passed."""
        if self._hello_deadline is None or now < self._hello_deadline:
            return
        reason = f"handshake not completed within {self.config.hello_timeout_s:g} s"
        self._send(Error(code=ErrorCode.HELLO_TIMEOUT, message=reason))
        self._end(ErrorCode.HELLO_TIMEOUT, reason)

    # --- internals -------------------------------------------------------

    @property
    def _client_hello(self) -> Hello | None:
        """The client's HELLO (ours or the peer's); None before it."""
        return self.local_hello if self._side is Side.CLIENT else self.peer_hello

    @property
    def _client_role(self) -> Role | None:
        return self._client_hello.role if self._client_hello is not None else None

    @property
    def _gate_features(self) -> frozenset[str]:
        """What a feature-gated frame needs: the negotiated features; before READY
        (REDIRECT, the only such frame there), the features the client's HELLO named."""
        if self._state is SessionState.READY or self._client_hello is None:
            return self.features
        return frozenset(self._client_hello.features)

    def _transition(self, frame_type: FrameType, direction: Direction) -> SessionState | None:
        return next_state(self._side, self._state, direction, frame_type)

    def _send(self, frame: Frame) -> None:
        frame_type = FRAME_TYPES[type(frame)]
        agents = (
            frame.agent_ids.shape[0]
            if isinstance(frame, ObservationBatch | Actions | InferRequest)
            else frame.outputs.shape[0]
            if isinstance(frame, InferResult)
            else None
        )
        new_state = self._allowed(frame_type, agents)
        payload = encode_payload(frame)
        if isinstance(frame, Ack) and frame.credit < self._credit_limit:
            raise LocalProtocolError(
                f"credit may not decrease ({frame.credit} < {self._credit_limit})"
            )
        self._queue(frame_type, payload, new_state)
        if isinstance(frame, Ack):
            self._credit_limit = frame.credit

    def _allowed(self, frame_type: FrameType, agents: int | None) -> SessionState:
        """The state after sending ``frame_type`` (of ``agents`` agents), if it may go now."""
        new_state = self._transition(frame_type, Direction.SEND)
        if new_state is None:
            raise LocalProtocolError(
                f"{self._side.value} may not send {frame_type.name} in state {self._state.name}"
            )
        roles = SENDER_ROLES.get((self._side, frame_type))
        if roles is not None and self._client_role not in roles:
            who = (
                f"{role_names(roles)} clients"
                if self._side is Side.CLIENT
                else f"the gateway to {role_names(roles)} clients"
            )
            raise LocalProtocolError(f"only {who} may send {frame_type.name}")
        feature = FEATURE_GATED.get(frame_type)
        if feature is not None and feature not in self._gate_features:
            raise LocalProtocolError(f"{frame_type.name} needs feature {feature!r}, not negotiated")
        if agents is not None:
            limit = self.config.max_batch_agents
            if self.welcome is not None:
                limit = min(limit, self.welcome.max_batch_agents)
            if agents > limit:
                raise LocalProtocolError(f"at most {limit} agents per {frame_type.name}")
        return new_state

    def _queue(self, frame_type: FrameType, payload: bytes, new_state: SessionState) -> None:
        """Check the payload's size (and an OBS_BATCH's credit), queue it, move on."""
        limit = self.config.max_frame_bytes
        if self.welcome is not None and self._side is Side.CLIENT:
            limit = min(limit, self.welcome.max_frame_bytes)
        if len(payload) > limit:
            raise LocalProtocolError(f"{frame_type.name} of {len(payload)} bytes exceeds {limit}")
        if frame_type is FrameType.OBS_BATCH:
            if self._batches >= self._credit_limit:
                raise LocalProtocolError(
                    f"no credit: {self._batches} of {self._credit_limit} batches sent"
                )
            self._batches += 1
        self._out.append(encode_prefix(len(payload)))
        self._out.append(payload)
        self._state = new_state

    def _end(self, code: int, reason: str) -> None:
        """Queue BYE, go CLOSED, report it (locally initiated)."""
        self._send(Bye(code=code, reason=_clip(reason)))
        self._closed(code, reason, by_peer=False)

    def _closed(self, code: int, reason: str, *, by_peer: bool) -> None:
        self._state = SessionState.CLOSED
        self._hello_deadline = None
        self._events.append(SessionClosed(code=code, reason=reason, by_peer=by_peer))

    def _violation(self, exc: RemoteProtocolError) -> None:
        message = str(exc) or type(exc).__name__
        code = int(exc.error_code)
        self._send(Error(code=code, message=_clip(message), seq=exc.seq))
        self._events.append(ProtocolViolation(error=exc))
        # Rule 8: before WELCOME the peer is unauthenticated; it gets one violation.
        preauth = self._side is Side.SERVER and self._state is not SessionState.READY
        if exc.fatal or preauth:
            self._end(code, message)

    def _receive(self, frame: Frame | BatchHeader, payload: bytes) -> None:
        frame_type = _RECEIVED_TYPES[type(frame)]
        seq = frame.seq if isinstance(frame, ObservationBatch | BatchHeader) else None
        new_state = self._transition(frame_type, Direction.RECEIVE)
        if new_state is None:
            raise UnexpectedFrame(
                f"{frame_type.name} not allowed in state {self._state.name}", seq=seq
            )
        sender = Side.SERVER if self._side is Side.CLIENT else Side.CLIENT
        roles = SENDER_ROLES.get((sender, frame_type))
        if roles is not None and self._client_role not in roles:
            role = self._client_role.value if self._client_role is not None else "unknown"
            raise UnexpectedFrame(
                f"{frame_type.name} is only for {role_names(roles)} clients, not role {role}",
                seq=seq,
            )
        feature = FEATURE_GATED.get(frame_type)
        if feature is not None and feature not in self._gate_features:
            raise UnexpectedFrame(f"{frame_type.name} needs feature {feature!r}, not negotiated")
        if isinstance(frame, Hello | Welcome) and frame.version != PROTOCOL_VERSION:
            raise UnsupportedVersion(
                f"version {frame.version} is not supported; this peer speaks {PROTOCOL_VERSION}"
            )
        if seq is not None:  # an OBS_BATCH
            if self._batches >= self._credit_limit:
                raise CreditExceeded(
                    f"batch beyond credit: {self._credit_limit} granted in this session", seq=seq
                )
            self._batches += 1
        self._state = new_state
        match frame:
            case Hello():
                self.peer_hello = frame
                self._events.append(HelloReceived(hello=frame))
            case Welcome():
                self.welcome = frame
                self._reader.max_frame_bytes = self.config.max_frame_bytes  # READY: full limits
                asked = frozenset(self.local_hello.features) if self.local_hello else frozenset()
                self.features = asked.intersection(frame.features)
                self._credit_limit = frame.credit
                self._events.append(Welcomed(welcome=frame))
            case ObservationBatch(seq=seq, tick=tick):
                self._events.append(
                    ObservationsReceived(
                        seq,
                        tick,
                        frame.count,
                        len(payload),
                        bytes(payload),
                        batch=frame,
                        agent_ids=frame.agent_ids,
                    )
                )
            case BatchHeader(seq=seq, tick=tick, count=count):
                self._events.append(
                    ObservationsReceived(
                        seq, tick, count, len(payload), bytes(payload), agent_ids=frame.agent_ids
                    )
                )
            case Ack():
                self._credit_limit = max(self._credit_limit, frame.credit)
                self._events.append(AckReceived(ack=frame))
            case Bye():
                self._closed(frame.code, frame.reason, by_peer=True)
            case _:
                self._events.append(frame_event(frame))


__all__ = ["DEFAULT_HELLO_TIMEOUT_S", "Session", "SessionConfig"]
