"""Placement administration on the wire (feature ``placement``): codec, roles, feature gate."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from edgeswarm.wire import (
    FEATURE_PLACEMENT,
    ErrorCode,
    LocalProtocolError,
    MalformedFrame,
    PlacementReplied,
    PlacementReply,
    PlacementRequest,
    PlacementRequested,
    ProtocolViolation,
    Role,
    decode_payload,
    encode_frame,
    encode_payload,
)

from .test_wire_session import events, roundtrip
from .test_wire_state import ready


def request_map(**override: Any) -> dict[str, Any]:
    m: dict[str, Any] = msgpack.unpackb(
        encode_payload(PlacementRequest(request_id=3, op="agents.show", args={"agent_id": 7}))
    )
    m.update(override)
    return m


@pytest.mark.parametrize(
    "override",
    [{"op": ""}, {"op": "x" * 65}, {"args": [1, 2]}, {"args": {1: "a"}}, {"request_id": -1}],
)
def test_malformed_placement_requests_are_refused(override: dict[str, Any]) -> None:
    with pytest.raises(MalformedFrame):
        decode_payload(msgpack.packb(request_map(**override)))


def test_encoder_refuses_an_empty_op() -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload(PlacementRequest(request_id=1, op=""))


def test_an_admin_asks_and_the_gateway_answers() -> None:
    admin, gateway = ready((FEATURE_PLACEMENT,), (FEATURE_PLACEMENT,), role=Role.ADMIN)
    admin.send(PlacementRequest(request_id=9, op="shards"))
    roundtrip(admin, gateway)
    [asked] = events(gateway)
    assert isinstance(asked, PlacementRequested)
    assert asked.request.op == "shards"
    gateway.send(PlacementReply(request_id=9, ok=True, result={"epoch": 4}))
    roundtrip(admin, gateway)
    [answer] = events(admin)
    assert isinstance(answer, PlacementReplied)
    assert answer.reply.result == {"epoch": 4}


@pytest.mark.parametrize("role", [Role.EDGE, Role.INFERENCE, Role.GATEWAY])
def test_only_admins_may_ask(role: Role) -> None:
    client, server = ready((FEATURE_PLACEMENT,), (FEATURE_PLACEMENT,), role=role)
    frame = PlacementRequest(request_id=1, op="edges.drain", args={"edge_id": "edge-1"})
    with pytest.raises(LocalProtocolError):
        client.send(frame)
    client._out.append(encode_frame(frame))  # a client that ignores the rule anyway
    roundtrip(client, server)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME
    assert not server.closed


def test_without_the_feature_placement_frames_are_unexpected() -> None:
    client, server = ready((), (), role=Role.ADMIN)
    frame = PlacementRequest(request_id=1, op="shards")
    with pytest.raises(LocalProtocolError):
        client.send(frame)
    client._out.append(encode_frame(frame))
    roundtrip(client, server)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME
