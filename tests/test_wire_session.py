"""Sessions of protocol v1, a client and a server paired in memory."""

from __future__ import annotations

import struct

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest

from edgeswarm.wire import (
    FEATURE_HEAVY,
    Ack,
    AckReceived,
    Actions,
    ActionsReceived,
    Auth,
    AuthReceived,
    Bye,
    Challenge,
    ChallengeReceived,
    EdgeStatus,
    Error,
    ErrorCode,
    ErrorReceived,
    Event,
    Frame,
    FrameTooLarge,
    FrameType,
    Hello,
    HelloReceived,
    InferRequest,
    InferResult,
    LocalProtocolError,
    MalformedFrame,
    ObservationBatch,
    ObservationsReceived,
    ProtocolViolation,
    Role,
    Session,
    SessionClosed,
    SessionConfig,
    SessionState,
    StateUpdate,
    Status,
    StatusReceived,
    StatusRequest,
    StatusRequested,
    UnexpectedFrame,
    UnsupportedVersion,
    Welcome,
    Welcomed,
    decode_payload,
    encode_frame,
    encode_payload,
)
from edgeswarm.wire.codec import MAX_TEXT_CHARS
from edgeswarm.wire.framing import FrameReader, encode_prefix

PK = bytes(range(32))

WELCOME = Welcome(
    version=2,
    session_id="s1",
    gateway_id="gw",
    max_frame_bytes=1 << 20,
    max_batch_agents=1000,
    credit=8,
)
CHALLENGE = Challenge(nonce=b"n" * 32, gateway_id="gw")
AUTH = Auth(signature=b"s" * 64)


def events(session: Session) -> list[Event]:
    out = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def state(session: Session) -> SessionState:
    """``session.state``, without letting mypy narrow it across calls."""
    return session.state


def roundtrip(a: Session, b: Session, now: float = 0.0) -> int:
    """Move bytes both ways until neither side has anything to send; returns bytes moved."""
    moved = 0
    while True:
        ab = a.data_to_send()
        ba = b.data_to_send()
        if not ab and not ba:
            return moved
        if ab:
            b.receive_data(ab, now)
        if ba:
            a.receive_data(ba, now)
        moved += len(ab) + len(ba)


def frames_in(data: bytes) -> list[Frame]:
    reader = FrameReader()
    reader.feed(data)
    out = []
    while (p := reader.next_payload()) is not None:
        out.append(decode_payload(p))
    return out


def batch(seq: int = 1, n: int = 4, k: int = 3) -> ObservationBatch:
    return ObservationBatch(
        seq=seq,
        tick=seq * 10,
        agent_ids=np.arange(n, dtype=np.uint32),
        observations=np.full((n, k), 0.5, dtype=np.float32),
        rewards=np.zeros(n, dtype=np.float32),
    )


def pair(role: Role = Role.EDGE, **server_config: float | bool) -> tuple[Session, Session]:
    client = Session(SessionConfig(is_client=True), now=0.0)
    server = Session(SessionConfig(is_client=False, **server_config), now=0.0)  # type: ignore[arg-type]
    return client, server


def connected(role: Role = Role.EDGE, **server_config: float | bool) -> tuple[Session, Session]:
    client, server = pair(role, **server_config)
    client.hello(Hello(version=2, public_key=PK, role=role, peer_id="edge-1", agents=4))
    roundtrip(client, server)
    [hello_event] = events(server)
    assert isinstance(hello_event, HelloReceived)
    server.challenge(CHALLENGE)
    roundtrip(client, server)
    assert events(client) == [ChallengeReceived(challenge=CHALLENGE)]
    client.authenticate(AUTH)
    roundtrip(client, server)
    assert events(server) == [AuthReceived(auth=AUTH)]
    server.accept(WELCOME)
    roundtrip(client, server)
    assert events(client) == [Welcomed(welcome=WELCOME)]
    return client, server


def test_handshake() -> None:
    client, server = pair()
    assert state(client) is SessionState.START
    assert state(server) is SessionState.AWAIT_HELLO
    hello = Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="edge-1", agents=4)
    client.hello(hello)
    assert state(client) is SessionState.AWAIT_CHALLENGE
    roundtrip(client, server)
    assert events(server) == [HelloReceived(hello=hello)]
    assert state(server) is SessionState.HELLO_RECEIVED
    assert server.peer_hello == hello
    assert server.get_timer() is not None  # the handshake deadline runs until WELCOME
    with pytest.raises(LocalProtocolError):
        server.accept(WELCOME)  # no WELCOME before the client proved its key
    server.challenge(CHALLENGE)
    assert state(server) is SessionState.AWAIT_AUTH
    roundtrip(client, server)
    assert events(client) == [ChallengeReceived(challenge=CHALLENGE)]
    assert state(client) is SessionState.CHALLENGED
    client.authenticate(AUTH)
    assert state(client) is SessionState.AWAIT_WELCOME
    roundtrip(client, server)
    assert events(server) == [AuthReceived(auth=AUTH)]
    assert state(server) is SessionState.AUTH_RECEIVED
    server.accept(WELCOME)
    assert server.get_timer() is None
    assert server.state is SessionState.READY
    roundtrip(client, server)
    assert events(client) == [Welcomed(welcome=WELCOME)]
    assert client.state is SessionState.READY
    assert client.welcome == WELCOME


def test_observations_and_ack() -> None:
    client, server = connected()
    client.send(batch(seq=1))
    roundtrip(client, server)
    [event] = events(server)
    assert isinstance(event, ObservationsReceived)
    assert (event.seq, event.count) == (1, 4)
    assert event.batch is not None
    assert event.batch.seq == 1
    assert event.batch.observations.shape == (4, 3)
    assert event.size == len(event.payload) > 0
    assert event.agent_ids is not None
    assert np.array_equal(event.agent_ids, event.batch.agent_ids)
    server.send(Ack(seq=1, accepted=4, credit=9))
    roundtrip(client, server)
    assert events(client) == [AckReceived(ack=Ack(seq=1, accepted=4, credit=9))]
    assert client.credit == 8


def test_server_without_batch_arrays_checks_batches_and_hands_out_headers() -> None:
    client, server = connected(batch_arrays=False)
    sent = batch(seq=1)
    client.send(sent)
    wire = client.data_to_send()
    server.receive_data(wire, 0.0)
    [event] = events(server)
    assert isinstance(event, ObservationsReceived)
    assert (event.seq, event.tick, event.count, event.batch) == (1, sent.tick, 4, None)
    assert event.agent_ids is not None  # what placement records, without a second decode
    assert np.array_equal(event.agent_ids, sent.agent_ids)
    assert not event.agent_ids.flags.writeable
    assert wire.endswith(event.payload)  # what a log stores: the payload as received
    # A malformed batch is refused exactly as with arrays built, and closes nothing.
    fields = msgpack.unpackb(encode_payload(batch(seq=2)))
    fields["rewards"] = {"dtype": "<f4", "shape": [3], "data": bytes(12)}  # 3 rows, not 4
    bad = msgpack.packb(fields, use_bin_type=True)
    server.receive_data(struct.pack(">I", len(bad)) + bad, 0.0)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.INVALID_ARRAY
    assert violation.error.seq == 2
    assert not server.closed


def test_client_cannot_send_beyond_credit() -> None:
    client, server = connected()
    for seq in range(1, 9):
        client.send(batch(seq=seq))
    assert client.credit == 0
    with pytest.raises(LocalProtocolError, match="no credit"):
        client.send(batch(seq=9))
    roundtrip(client, server)
    events(server)
    server.send(Ack(seq=1, accepted=4, credit=10))
    roundtrip(client, server)
    assert client.credit == 2
    client.send(batch(seq=9))


def test_credit_never_decreases() -> None:
    _client, server = connected()
    with pytest.raises(LocalProtocolError, match="decrease"):
        server.send(Ack(seq=1, accepted=4, credit=3))


def test_server_closes_session_that_exceeds_credit() -> None:
    _client, server = connected()
    # A misbehaving client: frames written past the credit it was granted.
    server.receive_data(b"".join(encode_frame(batch(seq=s)) for s in range(1, 10)), 0.0)
    got = events(server)
    assert sum(isinstance(e, ObservationsReceived) for e in got) == 8
    violation = next(e for e in got if isinstance(e, ProtocolViolation))
    assert violation.error.error_code is ErrorCode.NO_CREDIT
    assert violation.error.seq == 9
    assert str(violation.error) == "batch beyond credit: 8 granted in this session"
    assert server.closed


def test_refuse_after_auth() -> None:
    client, server = pair()
    client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e"))
    roundtrip(client, server)
    server.challenge(CHALLENGE)
    roundtrip(client, server)
    client.authenticate(AUTH)
    roundtrip(client, server)
    events(server)
    server.refuse(ErrorCode.AUTH_FAILED, "bad signature")
    roundtrip(client, server)
    got = events(client)
    assert ErrorReceived(error=Error(code=ErrorCode.AUTH_FAILED, message="bad signature")) in got
    assert client.closed


def test_batch_before_auth_is_unexpected_and_ends_the_session() -> None:
    client, server = pair()
    client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e"))
    roundtrip(client, server)
    events(server)
    server.receive_data(encode_frame(batch(seq=1)), 0.0)
    violation, closed = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME
    # Nothing is authenticated yet: the first violation ends the session.
    assert closed == SessionClosed(
        code=ErrorCode.UNEXPECTED_FRAME, reason=str(violation.error), by_peer=False
    )
    sent = frames_in(server.data_to_send())
    assert [type(f) for f in sent] == [Error, Bye]


def encode_prefixed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


@pytest.mark.parametrize(
    "first",
    [
        struct.pack(">I", 16 * 1024 * 1024),  # a 16 MiB frame announced before HELLO
        encode_frame(StatusRequest()),  # any frame but HELLO / AUTH
        encode_prefixed(msgpack.packb({"t": 1, "x": [[]] * 8})),  # a HELLO without its fields
    ],
    ids=["16MiB-prefix", "status-request", "malformed"],
)
def test_first_violation_before_hello_closes_at_once(first: bytes) -> None:
    """Before WELCOME the server reads frames of at most PREAUTH_MAX_FRAME_BYTES and
    closes at the first violation: a 16 MiB prefix is refused from its 4 bytes, before
    any of the body is buffered or decoded."""
    server = Session(SessionConfig(is_client=False), now=0.0)
    server.receive_data(first, 0.0)
    got = events(server)
    assert isinstance(got[0], ProtocolViolation)
    assert isinstance(got[-1], SessionClosed)
    assert server.closed
    assert server._reader.buffered <= len(first)


def test_full_limits_once_welcomed() -> None:
    """The handshake limits end at WELCOME, on both sides."""
    client, server = connected()
    big = batch(seq=1, n=1000, k=16)  # ~70 KB, above the pre-auth limit
    client.send(big)
    roundtrip(client, server)
    [received] = events(server)
    assert isinstance(received, ObservationsReceived)
    assert received.count == 1000
    status = Status(
        gateway_id="gw",
        uptime_s=1.0,
        edges=tuple(EdgeStatus(f"edge-{i}", True, 1, 1, 1, 1, 1, 0) for i in range(2000)),
    )
    server.send(status)
    roundtrip(client, server)
    assert any(isinstance(e, StatusReceived) for e in events(client))


@pytest.mark.parametrize("role", [Role.INFERENCE, Role.GATEWAY])
def test_status_is_for_edges_and_admins_only(role: Role) -> None:
    client, server = connected(role=role)
    server.receive_data(encode_frame(StatusRequest()), 0.0)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME
    assert not server.closed  # once authenticated, a wrong frame is not fatal
    with pytest.raises(LocalProtocolError):
        client.send(StatusRequest())


def test_actions() -> None:
    client, server = connected()
    server.send(
        Actions(tick=3, agent_ids=np.array([1, 2], np.uint32), actions=np.ones((2, 2), np.float32))
    )
    roundtrip(client, server)
    [event] = events(client)
    assert isinstance(event, ActionsReceived)
    np.testing.assert_array_equal(event.actions.agent_ids, [1, 2])


def test_status_request_and_reply() -> None:
    client, server = connected(Role.ADMIN)
    client.send(StatusRequest())
    roundtrip(client, server)
    assert events(server) == [StatusRequested()]
    status = Status(
        gateway_id="gw",
        uptime_s=2.0,
        edges=(EdgeStatus("e", True, 4, 1, 4, 100, 1, 0),),
    )
    server.send(status)
    roundtrip(client, server)
    assert events(client) == [StatusReceived(status=status)]


def test_error_frames_both_ways_are_reported() -> None:
    client, server = connected()
    server.send(Error(code=ErrorCode.INTERNAL_ERROR, message="oops", seq=2))
    client.send(Error(code=ErrorCode.INTERNAL_ERROR, message="me too"))
    roundtrip(client, server)
    assert events(client) == [
        ErrorReceived(error=Error(code=ErrorCode.INTERNAL_ERROR, message="oops", seq=2))
    ]
    assert events(server) == [
        ErrorReceived(error=Error(code=ErrorCode.INTERNAL_ERROR, message="me too"))
    ]
    assert client.state is server.state is SessionState.READY


@pytest.mark.parametrize("client_closes", [True, False])
def test_bye(client_closes: bool) -> None:
    client, server = connected()
    closer, other = (client, server) if client_closes else (server, client)
    closer.close(ErrorCode.SHUTTING_DOWN, "done")
    closer.close()  # idempotent
    assert closer.state is SessionState.CLOSED
    assert events(closer) == [
        SessionClosed(code=ErrorCode.SHUTTING_DOWN, reason="done", by_peer=False)
    ]
    roundtrip(client, server)
    assert other.state is SessionState.CLOSED
    assert events(other) == [
        SessionClosed(code=ErrorCode.SHUTTING_DOWN, reason="done", by_peer=True)
    ]
    # nothing more goes out, and anything arriving is ignored
    assert roundtrip(client, server) == 0
    other.receive_data(encode_frame(Ack(seq=1, accepted=1)), 0.0)
    assert events(other) == []
    with pytest.raises(LocalProtocolError):
        closer.send(StatusRequest())


def test_send_bye_is_close() -> None:
    client, server = connected()
    client.send(Bye(code=ErrorCode.NO_ERROR, reason="bye"))
    assert client.state is SessionState.CLOSED
    roundtrip(client, server)
    assert events(server) == [SessionClosed(code=0, reason="bye", by_peer=True)]


def test_refuse() -> None:
    client, server = pair()
    client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="intruder"))
    roundtrip(client, server)
    events(server)
    server.refuse(ErrorCode.UNEXPECTED_FRAME, "unknown edge")
    assert server.state is SessionState.CLOSED
    assert events(server) == [
        SessionClosed(code=ErrorCode.UNEXPECTED_FRAME, reason="unknown edge", by_peer=False)
    ]
    roundtrip(client, server)
    assert events(client) == [
        ErrorReceived(error=Error(code=ErrorCode.UNEXPECTED_FRAME, message="unknown edge")),
        SessionClosed(code=ErrorCode.UNEXPECTED_FRAME, reason="unknown edge", by_peer=True),
    ]
    assert client.state is SessionState.CLOSED


def test_hello_timeout() -> None:
    client, server = pair(hello_timeout_s=5.0)
    assert server.get_timer() == 5.0
    assert client.get_timer() is None
    server.handle_timer(4.9)
    assert state(server) is SessionState.AWAIT_HELLO
    server.handle_timer(5.0)
    assert server.state is SessionState.CLOSED
    assert server.get_timer() is None
    [closed] = events(server)
    assert isinstance(closed, SessionClosed)
    assert closed.code == ErrorCode.HELLO_TIMEOUT
    assert not closed.by_peer
    sent = frames_in(server.data_to_send())
    assert [type(f) for f in sent] == [Error, Bye]
    assert all(isinstance(f, Error | Bye) and f.code == ErrorCode.HELLO_TIMEOUT for f in sent)


def test_garbage_mid_session_is_not_fatal() -> None:
    client, server = connected()
    garbage = b"\xc1\xc1\xc1"
    server.receive_data(struct.pack(">I", len(garbage)) + garbage, 0.0)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, MalformedFrame)
    assert server.state is SessionState.READY
    roundtrip(client, server)
    [error] = events(client)
    assert isinstance(error, ErrorReceived)
    assert error.error.code == ErrorCode.MALFORMED_FRAME
    client.send(batch(seq=2))
    roundtrip(client, server)
    [event] = events(server)
    assert isinstance(event, ObservationsReceived)
    assert event.batch is not None
    assert event.batch.seq == 2


def test_invalid_batch_error_carries_seq() -> None:
    _, server = connected()
    bad = ObservationBatch(
        seq=7,
        tick=1,
        agent_ids=np.arange(2000, dtype=np.uint32),
        observations=np.zeros((2000, 1), np.float32),
        rewards=np.zeros(2000, np.float32),
    )
    server.receive_data(encode_frame(bad), 0.0)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    [error] = frames_in(server.data_to_send())
    assert error == Error(code=ErrorCode.BATCH_TOO_LARGE, message=str(violation.error), seq=7)


def test_oversize_prefix_is_fatal() -> None:
    client, server = connected()
    server.receive_data(struct.pack(">I", 1 << 30) + b"xx", 0.0)
    violation, closed = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, FrameTooLarge)
    assert isinstance(closed, SessionClosed)
    assert closed.code == ErrorCode.FRAME_TOO_LARGE
    assert server.state is SessionState.CLOSED
    roundtrip(client, server)
    error, bye = events(client)
    assert isinstance(error, ErrorReceived)
    assert error.error.code == ErrorCode.FRAME_TOO_LARGE
    assert bye == SessionClosed(code=ErrorCode.FRAME_TOO_LARGE, reason=closed.reason, by_peer=True)


def test_obs_batch_before_hello() -> None:
    _, server = pair()
    server.receive_data(encode_frame(batch(seq=3)), 0.0)
    violation, closed = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, UnexpectedFrame)
    assert violation.error.seq == 3
    assert isinstance(closed, SessionClosed)
    assert server.state is SessionState.CLOSED  # unauthenticated: one violation ends it
    error, bye = frames_in(server.data_to_send())
    assert isinstance(error, Error)
    assert error.code == ErrorCode.UNEXPECTED_FRAME
    assert error.seq == 3
    assert isinstance(bye, Bye)


def test_obs_batch_from_admin() -> None:
    client, server = connected(Role.ADMIN)
    with pytest.raises(LocalProtocolError):
        client.send(batch())
    # a misbehaving admin client that sends one anyway
    server.receive_data(encode_frame(batch(seq=5)), 0.0)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, UnexpectedFrame)
    assert server.state is SessionState.READY


@pytest.mark.parametrize(
    ("side", "frame"),
    [
        ("client", Ack(seq=1, accepted=1)),
        ("client", Status(gateway_id="g", uptime_s=0.0)),
        ("server", batch()),
        ("server", StatusRequest()),
        ("client", WELCOME),
        ("server", Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="x")),
    ],
)
def test_send_disallowed_frame(side: str, frame: object) -> None:
    client, server = connected()
    session = client if side == "client" else server
    with pytest.raises(LocalProtocolError):
        session.send(frame)  # type: ignore[arg-type]
    assert session.state is SessionState.READY
    assert session.data_to_send() == b""


def test_send_before_handshake_is_local_error() -> None:
    client, server = pair()
    with pytest.raises(LocalProtocolError):
        client.send(batch())
    with pytest.raises(LocalProtocolError):
        server.accept(WELCOME)
    with pytest.raises(LocalProtocolError):
        server.refuse(ErrorCode.NO_ERROR, "no")
    client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e"))
    with pytest.raises(LocalProtocolError):
        client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e"))
    with pytest.raises(LocalProtocolError):
        client.send(batch())  # still awaiting WELCOME


def test_batch_above_welcome_limit_is_local_error() -> None:
    client, _ = connected()
    with pytest.raises(LocalProtocolError):
        client.send(batch(n=WELCOME.max_batch_agents + 1, k=1))


def test_wrong_version_is_refused_fatally() -> None:
    _, server = pair()
    server.receive_data(
        encode_frame(Hello(version=3, public_key=PK, role=Role.EDGE, peer_id="future")), 0.0
    )
    violation, closed = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, UnsupportedVersion)
    assert closed == SessionClosed(
        code=ErrorCode.UNSUPPORTED_VERSION, reason=str(violation.error), by_peer=False
    )
    assert server.state is SessionState.CLOSED
    assert server.peer_hello is None
    sent = frames_in(server.data_to_send())
    assert [type(f) for f in sent] == [Error, Bye]


def test_frames_split_across_calls_and_coalesced() -> None:
    client, server = connected()
    for seq in range(1, 6):
        client.send(batch(seq=seq))
    data = client.data_to_send()
    for i in range(0, len(data), 7):
        server.receive_data(data[i : i + 7], 0.0)
    received = [e.batch for e in events(server) if isinstance(e, ObservationsReceived)]
    assert [b.seq if b is not None else None for b in received] == [1, 2, 3, 4, 5]


# --- what the survivors of mutation testing asked for ------------------------------------


def test_a_new_session_holds_nothing_yet() -> None:
    client, server = pair()
    for session in (client, server):
        assert (session.peer_hello, session.welcome, session.local_hello) == (None, None, None)
        assert session.sent_challenge is None
        assert session.features == frozenset()
        assert session.credit == 0


def test_the_server_keeps_what_it_sent() -> None:
    client, server = connected()
    assert server.sent_challenge == CHALLENGE
    assert server.welcome == WELCOME
    assert client.local_hello is not None
    assert client.local_hello.peer_id == "edge-1"


def test_observation_events_carry_tick_and_size_with_and_without_arrays() -> None:
    for arrays in (True, False):
        client, server = connected(batch_arrays=arrays)
        client.send(batch(seq=3))
        wire = client.data_to_send()
        server.receive_data(wire, 0.0)
        [event] = events(server)
        assert isinstance(event, ObservationsReceived)
        assert (event.seq, event.tick, event.count) == (3, 30, 4)
        assert event.size == len(wire) - 4 == len(event.payload)


def test_an_ack_may_repeat_the_credit_and_each_ack_raises_the_floor() -> None:
    client, server = connected()
    server.send(Ack(seq=1, accepted=4, credit=8))  # the same credit as WELCOME: allowed
    server.send(Ack(seq=2, accepted=4, credit=12))
    with pytest.raises(LocalProtocolError, match=r"^credit may not decrease \(11 < 12\)$"):
        server.send(Ack(seq=3, accepted=4, credit=11))
    roundtrip(client, server)
    assert client.credit == 12


def test_data_at_the_hello_deadline_closes_the_session() -> None:
    client, server = pair(hello_timeout_s=5.0)
    client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="late"))
    server.receive_data(client.data_to_send(), 5.0)  # exactly at the deadline: too late
    got = events(server)
    assert got[-1] == SessionClosed(
        code=ErrorCode.HELLO_TIMEOUT, reason="handshake not completed within 5 s", by_peer=False
    )
    assert not any(isinstance(e, HelloReceived) for e in got)
    [error, bye] = frames_in(server.data_to_send())
    assert isinstance(error, Error)
    assert error.code == ErrorCode.HELLO_TIMEOUT
    assert isinstance(bye, Bye)


def test_long_texts_are_clipped_to_the_limit() -> None:
    for length, clipped in ((MAX_TEXT_CHARS, False), (MAX_TEXT_CHARS + 1, True)):
        client, server = pair()
        client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e"))
        roundtrip(client, server)
        events(server)
        reason = "r" * length
        server.refuse(ErrorCode.UNKNOWN_PEER, reason)
        [error, bye] = frames_in(server.data_to_send())
        assert isinstance(error, Error)
        assert isinstance(bye, Bye)
        expected = reason[: MAX_TEXT_CHARS - 3] + "..." if clipped else reason
        assert error.message == bye.reason == expected
        assert len(error.message) == MAX_TEXT_CHARS


def test_close_says_bye_with_an_empty_reason_by_default() -> None:
    client, _server = connected()
    client.close()
    [bye] = frames_in(client.data_to_send())
    assert bye == Bye(code=ErrorCode.NO_ERROR, reason="")


def test_limits_hold_at_their_boundary() -> None:
    client, server = connected()  # WELCOME: at most 1000 agents, 1 MiB frames
    client.send(batch(seq=1, n=1000, k=1))  # exactly the agent limit: fine
    with pytest.raises(LocalProtocolError, match=r"^at most 1000 agents per OBS_BATCH$"):
        client.send(batch(seq=2, n=1001, k=1))
    huge = batch(seq=2, n=300, k=1024)  # 300 agents x 1024 float32: > 1 MiB
    with pytest.raises(LocalProtocolError, match=r"^OBS_BATCH of \d+ bytes exceeds 1048576$"):
        client.send(huge)
    # the server's WELCOME limits what it accepts, not what it sends
    roundtrip(client, server)
    events(server)
    big = Actions(
        tick=1,
        agent_ids=np.arange(300, dtype=np.uint32),
        actions=np.zeros((300, 1024), np.float32),
    )
    server.send(big)
    assert len(server.data_to_send()) > 1 << 20


def test_a_frame_of_exactly_the_frame_limit_goes() -> None:
    actions = Actions(
        tick=1, agent_ids=np.arange(3, dtype=np.uint32), actions=np.ones((3, 2), np.float32)
    )
    size = len(encode_payload(actions))
    _, server = connected(max_frame_bytes=size)
    server.send(actions)  # exactly the limit
    _, server = connected(max_frame_bytes=size - 1)
    with pytest.raises(LocalProtocolError, match=rf"^ACTIONS of {size} bytes exceeds {size - 1}$"):
        server.send(actions)


@pytest.mark.parametrize(
    ("setup", "frame", "message", "seq"),
    [
        ("before-hello", batch(seq=5), "OBS_BATCH not allowed in state AWAIT_HELLO", 5),
        ("admin", batch(seq=6), "OBS_BATCH is only for edge clients, not role admin", 6),
        (
            "edge",
            StateUpdate(update=b"u"),
            "STATE_UPDATE needs feature 'state', not negotiated",
            None,
        ),
    ],
)
def test_errors_sent_to_a_peer_say_what_it_did(
    setup: str, frame: Frame, message: str, seq: int | None
) -> None:
    if setup == "before-hello":
        _, server = pair()
    else:
        _, server = connected(Role.ADMIN if setup == "admin" else Role.EDGE)
    server.receive_data(encode_frame(frame), 0.0)
    errors = [f for f in frames_in(server.data_to_send()) if isinstance(f, Error)]
    assert errors[-1].message == message
    assert errors[-1].seq == seq


def test_an_unsupported_version_is_named() -> None:
    _, server = pair()
    hello = msgpack.unpackb(
        encode_payload(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e"))
    )
    hello["version"] = 9
    raw = msgpack.packb(hello, use_bin_type=True)
    server.receive_data(struct.pack(">I", len(raw)) + raw, 0.0)
    [error, _bye] = frames_in(server.data_to_send())
    assert isinstance(error, Error)
    assert error.message == "version 9 is not supported; this peer speaks 2"


def test_local_misuse_is_named() -> None:
    client, server = pair()
    with pytest.raises(LocalProtocolError, match=r"^this implementation speaks version 2$"):
        client.hello(Hello(version=3, public_key=PK, role=Role.EDGE, peer_id="e"))
    with pytest.raises(LocalProtocolError, match=r"^use hello\(\), challenge\(\), authenticate"):
        client.send(CHALLENGE)
    with pytest.raises(LocalProtocolError, match=r"^refuse\(\) is not allowed in state AWAIT"):
        server.refuse(ErrorCode.AUTH_FAILED, "no")
    with pytest.raises(LocalProtocolError, match=r"^client may not send STATUS in state START$"):
        client.send(Status(gateway_id="g", uptime_s=0.0, edges=()))
    admin, _gateway = connected(Role.ADMIN)
    with pytest.raises(LocalProtocolError, match=r"^only edge clients may send OBS_BATCH$"):
        admin.send(batch())
    with pytest.raises(LocalProtocolError, match=r"^STATE_UPDATE needs feature 'state', not"):
        admin.send(StateUpdate(update=b"u"))
    with pytest.raises(LocalProtocolError, match=r"^this implementation speaks version 2$"):
        Session(SessionConfig(is_client=False), now=0.0).accept(
            Welcome(version=3, session_id="s", gateway_id="g", max_frame_bytes=1,
                    max_batch_agents=1)
        )  # fmt: skip
    admin.close()
    with pytest.raises(LocalProtocolError, match=r"^the session is closed$"):
        admin.send(Bye(code=0, reason=""))


def test_welcome_may_not_grant_a_feature_the_client_did_not_ask_for() -> None:
    client, server = pair()
    client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e"))
    roundtrip(client, server)
    server.challenge(CHALLENGE)
    roundtrip(client, server)
    client.authenticate(AUTH)
    roundtrip(client, server)
    events(server)
    with pytest.raises(
        LocalProtocolError, match=r"^WELCOME may only name features the client's HELLO named$"
    ):
        server.accept(
            Welcome(version=2, session_id="s", gateway_id="g", max_frame_bytes=1 << 20,
                    max_batch_agents=10, features=("state",))
        )  # fmt: skip


def test_an_encoded_batch_spends_credit_as_a_batch_sent_as_a_frame_does() -> None:
    """An edge sends its spooled batches encoded (``send_encoded``): each one counts
    against the credit window, and the ninth of a window of 8 is refused."""
    client, _ = connected()
    for seq in range(1, 9):
        client.send_encoded(FrameType.OBS_BATCH, encode_payload(batch(seq=seq)), count=4)
    assert client.credit == 0
    with pytest.raises(LocalProtocolError, match="no credit"):
        client.send_encoded(FrameType.OBS_BATCH, encode_payload(batch(seq=9)), count=4)


def test_encoded_actions_are_sent_byte_for_byte_within_the_limits_of_a_frame() -> None:
    """The gateway encodes ACTIONS once: the datagram's bytes go on the stream when they
    do not fit one, checked as ``send`` checks the frame (they were encoded twice)."""
    client, server = connected()  # WELCOME: at most 1000 agents
    frame = Actions(
        tick=3, agent_ids=np.arange(5, dtype=np.uint32), actions=np.ones((5, 2), np.float32)
    )
    payload = encode_payload(frame)
    server.send_encoded(FrameType.ACTIONS, payload, count=5)
    data = server.data_to_send()
    assert data == encode_prefix(len(payload)) + payload
    client.receive_data(data, 0.0)
    [received] = events(client)
    assert isinstance(received, ActionsReceived)
    assert np.array_equal(received.actions.actions, frame.actions)
    with pytest.raises(LocalProtocolError, match="at most 1000 agents"):
        server.send_encoded(FrameType.ACTIONS, payload, count=1001)
    with pytest.raises(LocalProtocolError, match="sent as a frame"):
        server.send_encoded(FrameType.ACK, payload, count=5)
    with pytest.raises(LocalProtocolError):
        client.send_encoded(FrameType.ACTIONS, payload, count=5)  # edges send no ACTIONS
    assert server.data_to_send() == client.data_to_send() == b""


def test_frames_that_change_the_session_make_no_event_on_their_own() -> None:
    from edgeswarm.wire.events import frame_event

    with pytest.raises(TypeError, match="session itself"):
        frame_event(Bye(code=0, reason=""))


def infer_request(rows: int = 3) -> InferRequest:
    return InferRequest(
        request_id=1,
        model="m",
        deadline_ms=100,
        tick=1,
        agent_ids=np.arange(rows, dtype=np.uint32),
        inputs=np.zeros((rows, 2), dtype=np.float32),
    )


def test_the_gateway_sends_infer_requests_only_to_inference_clients() -> None:
    """Both ends hold SENDER_ROLES: the gateway may not send an edge an INFER_REQUEST, and
    an edge that receives one anyway reports it (the session goes on)."""
    client, server = connected(Role.EDGE)
    with pytest.raises(
        LocalProtocolError, match=r"^only the gateway to inference clients may send INFER_REQUEST$"
    ):
        server.send(infer_request())
    client.receive_data(encode_frame(infer_request()), now=0.0)
    [violation] = events(client)
    assert isinstance(violation, ProtocolViolation)
    assert isinstance(violation.error, UnexpectedFrame)
    assert str(violation.error) == "INFER_REQUEST is only for inference clients, not role edge"
    assert client.state is SessionState.READY


def test_an_infer_result_is_bounded_by_its_rows() -> None:
    """An INFER_RESULT counts its outputs' rows (one per agent) against the batch limit;
    its columns are the model's outputs and do not count."""
    from .test_wire_state import ready

    client, _ = ready((FEATURE_HEAVY,), (FEATURE_HEAVY,), Role.INFERENCE)
    assert client.welcome is not None
    limit = client.welcome.max_batch_agents
    client.send(InferResult(request_id=1, status=0, outputs=np.zeros((2, limit + 1), np.float32)))
    with pytest.raises(LocalProtocolError, match=rf"^at most {limit} agents per INFER_RESULT$"):
        client.send(
            InferResult(request_id=2, status=0, outputs=np.zeros((limit + 1, 1), np.float32))
        )


def test_hello_gets_the_tighter_limits_before_welcome() -> None:
    """Section 7: a frame before WELCOME is unpacked with the pre-auth limits (a map of at
    most 64 keys), so a HELLO padded with unknown keys is refused; after WELCOME a map
    that size is fine (unknown keys are ignored)."""
    _, server = pair()
    hello = {"t": int(FrameType.HELLO), "version": 2, "public_key": PK, "role": "edge"}
    padded = {**hello, "peer_id": "edge-1", **{f"x{n}": 0 for n in range(80)}}
    server.receive_data(encode_prefixed(msgpack.packb(padded)), now=0.0)
    [closed] = [e for e in events(server) if isinstance(e, SessionClosed)]
    assert server.state is SessionState.CLOSED
    assert "not valid msgpack" in closed.reason
