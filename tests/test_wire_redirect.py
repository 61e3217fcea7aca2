"""REDIRECT on the wire (feature ``redirect``, gateway -> edge): codec, limits, the gate,
and where in the session it may go (after AUTH instead of WELCOME, or in READY)."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from edgeswarm.wire import (
    FEATURE_REDIRECT,
    ErrorCode,
    Hello,
    LocalProtocolError,
    MalformedFrame,
    ProtocolViolation,
    Redirect,
    Redirected,
    Role,
    Session,
    SessionConfig,
    SessionState,
    decode_payload,
    encode_frame,
    encode_payload,
)
from edgeswarm.wire.events import SessionClosed

from .test_wire_session import PK, events, roundtrip
from .test_wire_state import authenticated as authenticated_in_state
from .test_wire_state import ready

TO_B = Redirect(gateway_id="gw-b", host="127.0.0.1", port=4433, reason="owner")


def authenticated(features: tuple[str, ...], role: Role = Role.EDGE) -> tuple[Session, Session]:
    """After AUTH: the server decides WELCOME or REDIRECT."""
    client, server = authenticated_in_state(features, role, peer_id="e1")
    events(client)
    events(server)
    assert server.state is SessionState.AUTH_RECEIVED
    return client, server


def test_redirect_round_trips() -> None:
    assert decode_payload(encode_payload(TO_B)) == TO_B
    v6 = Redirect(gateway_id="g" * 64, host="::1", port=65535)
    assert decode_payload(encode_payload(v6)) == v6


def redirect_map(**override: Any) -> dict[str, Any]:
    m: dict[str, Any] = msgpack.unpackb(encode_payload(TO_B))
    m.update(override)
    return m


@pytest.mark.parametrize(
    "override",
    [
        {"port": 0},
        {"port": 65536},
        {"port": -1},
        {"port": "4433"},
        {"gateway_id": ""},
        {"gateway_id": "g" * 65},
        {"host": ""},
        {"host": "h" * 254},
        {"reason": 7},
    ],
    ids=repr,
)
def test_malformed_redirects_are_refused(override: dict[str, Any]) -> None:
    with pytest.raises(MalformedFrame):
        decode_payload(msgpack.packb(redirect_map(**override)))


def test_a_redirect_without_a_field_is_malformed() -> None:
    m = redirect_map()
    del m["host"]
    with pytest.raises(MalformedFrame):
        decode_payload(msgpack.packb(m))


@pytest.mark.parametrize(
    "frame",
    [
        Redirect(gateway_id="", host="h", port=1),
        Redirect(gateway_id="g", host="", port=1),
        Redirect(gateway_id="g", host="h", port=0),
        Redirect(gateway_id="g", host="h", port=70000),
    ],
    ids=repr,
)
def test_the_encoder_refuses_what_the_decoder_would(frame: Redirect) -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(frame)


def test_after_auth_an_edge_that_asked_for_it_is_redirected_instead_of_welcomed() -> None:
    client, server = authenticated((FEATURE_REDIRECT,))
    server.send(TO_B)
    server.close(ErrorCode.REDIRECTED, "owned by gw-b")
    roundtrip(client, server)
    got = events(client)
    assert got[0] == Redirected(redirect=TO_B)
    assert isinstance(got[1], SessionClosed)
    assert got[1].code == ErrorCode.REDIRECTED
    assert client.welcome is None
    assert client.closed
    assert server.closed


def test_an_edge_that_did_not_ask_for_it_is_never_redirected() -> None:
    _client, server = authenticated(())
    with pytest.raises(LocalProtocolError, match="redirect"):
        server.send(TO_B)
    _client2, server2 = ready((), (), role=Role.EDGE)
    with pytest.raises(LocalProtocolError, match="redirect"):
        server2.send(TO_B)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.GATEWAY, Role.INFERENCE])
def test_only_edges_are_redirected(role: Role) -> None:
    _client, server = authenticated((FEATURE_REDIRECT,), role=role)
    with pytest.raises(LocalProtocolError, match="edge"):
        server.send(TO_B)


def test_in_ready_the_gateway_may_redirect_an_edge_that_negotiated_it() -> None:
    edge, gateway = ready((FEATURE_REDIRECT,), (FEATURE_REDIRECT,), role=Role.EDGE)
    gateway.send(TO_B)
    gateway.close(ErrorCode.REDIRECTED, "the ring changed")
    roundtrip(edge, gateway)
    got = events(edge)
    assert got[0] == Redirected(redirect=TO_B)
    assert edge.closed


def test_a_redirect_the_edge_did_not_ask_for_is_a_violation() -> None:
    edge, _gateway = ready((), (), role=Role.EDGE)
    edge.receive_data(encode_frame(TO_B), 0.0)
    (violation,) = [e for e in events(edge) if isinstance(e, ProtocolViolation)]
    assert violation.error.error_code == ErrorCode.UNEXPECTED_FRAME


def test_an_edge_never_sends_a_redirect() -> None:
    edge, gateway = ready((FEATURE_REDIRECT,), (FEATURE_REDIRECT,), role=Role.EDGE)
    with pytest.raises(LocalProtocolError):
        edge.send(TO_B)
    gateway.receive_data(encode_frame(TO_B), 0.0)
    assert any(isinstance(e, ProtocolViolation) for e in events(gateway))


def test_before_auth_no_redirect_goes_out() -> None:
    client = Session(SessionConfig(is_client=True), now=0.0)
    server = Session(SessionConfig(is_client=False), now=0.0)
    client.hello(
        Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e", features=(FEATURE_REDIRECT,))
    )
    roundtrip(client, server)
    with pytest.raises(LocalProtocolError):
        server.send(TO_B)  # HELLO_RECEIVED: nothing is authenticated yet
