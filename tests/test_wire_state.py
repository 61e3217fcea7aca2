"""State frames of protocol v2: STATE_SYNC / STATE_UPDATE, feature negotiation, state table."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from edgeswarm.state import StateSync, SwarmDocument
from edgeswarm.wire import (
    FEATURE_STATE,
    Challenge,
    Error,
    ErrorCode,
    FrameType,
    Hello,
    LocalProtocolError,
    MalformedFrame,
    ProtocolViolation,
    Role,
    Session,
    SessionConfig,
    SessionState,
    StateSyncRequest,
    StateSyncRequested,
    StateUpdate,
    StateUpdateReceived,
    Welcome,
    Welcomed,
    decode_payload,
    encode_payload,
)
from edgeswarm.wire.codec import MAX_STATE_VECTOR_BYTES
from edgeswarm.wire.states import FEATURE_GATED, TRANSITIONS, Direction, Side, next_state

from .test_wire_session import AUTH, CHALLENGE, PK, events, frames_in, roundtrip


def welcome(*features: str) -> Welcome:
    return Welcome(
        version=2,
        session_id="s1",
        gateway_id="gw",
        max_frame_bytes=1 << 20,
        max_batch_agents=1000,
        credit=8,
        features=features,
    )


def authenticated(
    client_features: tuple[str, ...], role: Role = Role.EDGE, peer_id: str = "p1"
) -> tuple[Session, Session]:
    """A client and a server with AUTH received: the server answers WELCOME (or not)."""
    client = Session(SessionConfig(is_client=True), now=0.0)
    server = Session(SessionConfig(is_client=False), now=0.0)
    client.hello(
        Hello(version=2, public_key=PK, role=role, peer_id=peer_id, features=client_features)
    )
    roundtrip(client, server)
    server.challenge(CHALLENGE)
    roundtrip(client, server)
    client.authenticate(AUTH)
    roundtrip(client, server)
    return client, server


def ready(
    client_features: tuple[str, ...] = (FEATURE_STATE,),
    server_features: tuple[str, ...] = (FEATURE_STATE,),
    role: Role = Role.EDGE,
) -> tuple[Session, Session]:
    client, server = authenticated(client_features, role)
    server.accept(welcome(*server_features))
    roundtrip(client, server)
    events(client)
    events(server)
    return client, server


# --- codec -----------------------------------------------------------------


def test_state_frames_round_trip() -> None:
    for frame in (StateSyncRequest(state_vector=b"\x01\x02\x03"), StateUpdate(update=b"\x00\x00")):
        assert decode_payload(encode_payload(frame)) == frame


def test_features_absent_means_none_and_are_sent_only_when_set() -> None:
    plain = Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e")
    assert "features" not in msgpack.unpackb(encode_payload(plain))
    with_state = Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e", features=("state",))
    assert msgpack.unpackb(encode_payload(with_state))["features"] == ["state"]
    assert decode_payload(encode_payload(with_state)) == with_state


@pytest.mark.parametrize(
    "fields",
    [
        {"t": FrameType.STATE_SYNC},
        {"t": FrameType.STATE_SYNC, "state_vector": b""},
        {"t": FrameType.STATE_SYNC, "state_vector": "text"},
        {"t": FrameType.STATE_SYNC, "state_vector": b"x" * (MAX_STATE_VECTOR_BYTES + 1)},
        {"t": FrameType.STATE_UPDATE},
        {"t": FrameType.STATE_UPDATE, "update": b""},
        {"t": FrameType.STATE_UPDATE, "update": [1, 2]},
        {"t": FrameType.HELLO, "version": 2, "role": "edge", "peer_id": "e",
         "public_key": PK, "features": "state"},
        {"t": FrameType.HELLO, "version": 2, "role": "edge", "peer_id": "e",
         "public_key": PK, "features": [1]},
        {"t": FrameType.HELLO, "version": 2, "role": "edge", "peer_id": "e",
         "public_key": PK, "features": ["x"] * 33},
    ],
)  # fmt: skip
def test_malformed_state_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(MalformedFrame):
        decode_payload(msgpack.packb({k: int(v) if k == "t" else v for k, v in fields.items()}))


def test_encoder_refuses_empty_state_frames() -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload(StateUpdate(update=b""))
    with pytest.raises(LocalProtocolError):
        encode_payload(StateSyncRequest(state_vector=b""))


# --- state table -----------------------------------------------------------


def test_table_allows_state_frames_only_in_ready() -> None:
    state_frames = [t for t, feature in FEATURE_GATED.items() if feature == FEATURE_STATE]
    assert state_frames  # the heavy lane's frames flow one way each: tests/test_wire_heavy.py
    for frame_type in state_frames:
        for side in Side:
            for direction in Direction:
                assert next_state(side, SessionState.READY, direction, frame_type) is (
                    SessionState.READY
                )
                for state in SessionState:
                    if state is not SessionState.READY:
                        assert (side, state, direction, frame_type) not in TRANSITIONS


# --- sessions --------------------------------------------------------------


def test_negotiated_feature_lets_state_frames_flow_both_ways() -> None:
    client, server = ready()
    assert client.features == server.features == {FEATURE_STATE}
    client.send(StateSyncRequest(state_vector=b"\x00"))
    server.send(StateSyncRequest(state_vector=b"\x00"))
    server.send(StateUpdate(update=b"\x00\x00"))
    roundtrip(client, server)
    assert events(server) == [StateSyncRequested(state_vector=b"\x00")]
    assert events(client) == [
        StateSyncRequested(state_vector=b"\x00"),
        StateUpdateReceived(update=b"\x00\x00"),
    ]
    assert client.state is server.state is SessionState.READY


def test_client_without_feature_gets_none() -> None:
    client, server = ready(client_features=(), server_features=())
    assert client.features == server.features == frozenset()
    with pytest.raises(LocalProtocolError):
        server.send(StateUpdate(update=b"\x00\x00"))
    with pytest.raises(LocalProtocolError):
        client.send(StateSyncRequest(state_vector=b"\x00"))


def test_server_may_not_grant_unasked_features() -> None:
    client = Session(SessionConfig(is_client=True), now=0.0)
    server = Session(SessionConfig(is_client=False), now=0.0)
    client.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="p1"))
    roundtrip(client, server)
    server.challenge(Challenge(nonce=b"n" * 32, gateway_id="gw"))
    roundtrip(client, server)
    client.authenticate(AUTH)
    roundtrip(client, server)
    with pytest.raises(LocalProtocolError):
        server.accept(welcome(FEATURE_STATE))


def test_client_ignores_features_it_did_not_ask_for() -> None:
    client2 = Session(SessionConfig(is_client=True), now=0.0)
    client2.hello(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="p1"))
    client2.data_to_send()
    # a (buggy) gateway grants "state" anyway: the client does not turn it on
    client2.receive_data(
        b"".join(
            [
                _frame(Challenge(nonce=b"n" * 32, gateway_id="gw")),
            ]
        ),
        0.0,
    )
    client2.authenticate(AUTH)
    client2.receive_data(_frame(welcome(FEATURE_STATE, "future-thing")), 0.0)
    assert any(isinstance(e, Welcomed) for e in events(client2))
    assert client2.features == frozenset()


def test_state_frame_without_negotiation_is_unexpected_not_fatal() -> None:
    client, _server = ready(client_features=(), server_features=())
    client.receive_data(_frame(StateUpdate(update=b"\x00\x00")), 0.0)
    [violation] = events(client)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME
    assert not violation.error.fatal
    [error] = frames_in(client.data_to_send())
    assert isinstance(error, Error)
    assert error.code == ErrorCode.UNEXPECTED_FRAME
    assert client.state is SessionState.READY


def test_unknown_features_are_ignored() -> None:
    client, server = ready(client_features=(FEATURE_STATE, "teleport"))
    assert server.peer_hello is not None
    assert server.peer_hello.features == (FEATURE_STATE, "teleport")
    assert client.features == {FEATURE_STATE}


def test_sync_flow_over_sessions_moves_only_the_difference() -> None:
    """Two documents synced through real sessions: handshake, then incremental updates."""
    client, server = ready()
    edge_doc, gateway_doc = SwarmDocument("edge-1"), SwarmDocument("gateway-0")
    gateway_doc.counter_add("g/hits", 5)
    edge_doc.counter_add("g/hits", 2)
    edge_link, gateway_link = StateSync(edge_doc), StateSync(gateway_doc)

    def pump() -> None:
        for _ in range(10):
            roundtrip(client, server)
            moved = False
            for session, link in ((client, edge_link), (server, gateway_link)):
                for event in events(session):
                    moved = True
                    if isinstance(event, StateSyncRequested):
                        diff = link.handle_sync_request(event.state_vector)
                        session.send(StateUpdate(update=diff))
                    elif isinstance(event, StateUpdateReceived):
                        link.apply_update(event.update)
            for session, link in ((client, edge_link), (server, gateway_link)):
                update = link.data_to_send()
                if update is not None:
                    session.send(StateUpdate(update=update))
                    moved = True
            if not moved:
                return
        raise AssertionError("sync did not settle in 10 rounds")

    client.send(StateSyncRequest(state_vector=edge_link.sync_request()))
    server.send(StateSyncRequest(state_vector=gateway_link.sync_request()))
    pump()
    assert edge_doc.counter_value("g/hits") == gateway_doc.counter_value("g/hits") == 7
    before = gateway_link.bytes_sent
    edge_doc.counter_add("g/hits", 1)
    pump()
    assert gateway_doc.counter_value("g/hits") == 8
    assert gateway_link.bytes_sent - before < 64  # only an echo of the small change


def _frame(frame: Any) -> bytes:
    from edgeswarm.wire import encode_frame

    return encode_frame(frame)
