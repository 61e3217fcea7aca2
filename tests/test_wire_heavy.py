"""The heavy inference lane on the wire (feature ``heavy``): frames, limits, roles, state table."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest

from edgeswarm.wire import (
    FEATURE_HEAVY,
    Actions,
    BatchTooLarge,
    ChallengeReceived,
    ErrorCode,
    FrameType,
    Hello,
    HelloReceived,
    InferRequest,
    InferRequestReceived,
    InferResult,
    InferResultReceived,
    InferStatus,
    InvalidArray,
    LocalProtocolError,
    MalformedFrame,
    ProtocolViolation,
    Role,
    Session,
    SessionConfig,
    Status,
    StatusRequest,
    Welcomed,
    decode_payload,
    encode_frame,
    encode_payload,
)
from edgeswarm.wire.codec import PREAUTH_MAX_FRAME_BYTES
from edgeswarm.wire.infer_codec import MAX_MODELS
from edgeswarm.wire.states import FEATURE_GATED, SENDER_ROLES, Direction, Side, next_state

from .test_wire_session import AUTH, CHALLENGE, PK, events, roundtrip
from .test_wire_state import ready, welcome


def request(n: int = 3, k: int = 8, request_id: int = 1) -> InferRequest:
    return InferRequest(
        request_id=request_id,
        model="triage",
        deadline_ms=50,
        tick=2,
        agent_ids=np.arange(n, dtype=np.uint32),
        inputs=np.ones((n, k), dtype=np.float32),
    )


def result(n: int = 3, request_id: int = 1) -> InferResult:
    return InferResult(
        request_id=request_id, status=InferStatus.OK, outputs=np.ones((n, 2), dtype=np.float32)
    )


def request_map(**override: Any) -> dict[str, Any]:
    m: dict[str, Any] = msgpack.unpackb(encode_payload(request()))
    m.update(override)
    return m


def heavy(role: Role) -> tuple[Session, Session]:
    return ready((FEATURE_HEAVY,), (FEATURE_HEAVY,), role=role)


# --- codec -----------------------------------------------------------------


def test_plain_actions_carry_no_result_keys() -> None:
    plain = Actions(
        tick=1, agent_ids=np.arange(2, dtype=np.uint32), actions=np.ones((2, 2), np.float32)
    )
    m = msgpack.unpackb(encode_payload(plain))
    assert "request_id" not in m
    assert "status" not in m
    decoded = decode_payload(encode_payload(plain))
    assert isinstance(decoded, Actions)
    assert decoded.request_id is None


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"deadline_ms": 0}, MalformedFrame),
        ({"deadline_ms": 600_001}, MalformedFrame),
        ({"model": ""}, MalformedFrame),
        ({"model": "m" * 129}, MalformedFrame),
        ({"request_id": -1}, MalformedFrame),
        ({"inputs": {"dtype": "<f4", "shape": [2, 8], "data": b"\0" * 64}}, InvalidArray),
        ({"inputs": {"dtype": "<f8", "shape": [3, 8], "data": b"\0" * 192}}, InvalidArray),
        ({"inputs": {"dtype": "<f4", "shape": [3, 8], "data": b"\0" * 95}}, InvalidArray),
        ({"inputs": {"dtype": "<f4", "shape": [3, 0], "data": b""}}, InvalidArray),
        ({"inputs": {"dtype": "<f4", "shape": [3, 1025], "data": b"\0" * 12300}}, InvalidArray),
    ],
)
def test_malformed_requests_are_refused(override: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_payload(msgpack.packb(request_map(**override), use_bin_type=True))


def test_too_many_rows_is_batch_too_large() -> None:
    big = encode_payload(request(n=20))
    with pytest.raises(BatchTooLarge):
        decode_payload(big, max_batch_agents=10)


@pytest.mark.parametrize(
    "fields",
    [
        {"t": FrameType.INFER_RESULT, "request_id": 1, "status": 9,
         "outputs": {"dtype": "<f4", "shape": [0, 1], "data": b""}},
        {"t": FrameType.INFER_RESULT, "request_id": 1, "status": 0},
        {"t": FrameType.ACTIONS, "tick": 1, "request_id": 1, "status": 4,
         "agent_ids": {"dtype": "<u4", "shape": [0], "data": b""},
         "actions": {"dtype": "<f4", "shape": [0, 1], "data": b""}},
        {"t": FrameType.HELLO, "version": 2, "role": "inference", "peer_id": "n",
         "public_key": bytes(32), "models": ["ok", 7]},
        {"t": FrameType.HELLO, "version": 2, "role": "inference", "peer_id": "n",
         "public_key": bytes(32), "models": ["m"] * 33},
    ],
)  # fmt: skip
def test_malformed_heavy_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(MalformedFrame):
        decode_payload(msgpack.packb(fields, use_bin_type=True))


def test_encoder_refuses_what_the_decoder_would() -> None:
    for bad in (
        InferRequest(
            request_id=1,
            model="m",
            deadline_ms=0,
            tick=0,
            agent_ids=np.zeros(1, np.uint32),
            inputs=np.zeros((1, 1), np.float32),
        ),
        InferRequest(
            request_id=1,
            model="m",
            deadline_ms=5,
            tick=0,
            agent_ids=np.zeros(2, np.uint32),
            inputs=np.zeros((1, 1), np.float32),
        ),
        InferResult(request_id=1, status=42, outputs=np.zeros((0, 1), np.float32)),
    ):
        with pytest.raises(LocalProtocolError):
            encode_payload(bad)


# --- state table and roles -------------------------------------------------


def test_heavy_frames_flow_only_in_ready_and_only_one_way_each() -> None:
    for frame_type in (FrameType.INFER_REQUEST, FrameType.INFER_RESULT):
        assert FEATURE_GATED[frame_type] == FEATURE_HEAVY
    allowed = {
        (side, frame)
        for (side, frame) in SENDER_ROLES
        if frame in (FrameType.INFER_REQUEST, FrameType.INFER_RESULT)
    }
    assert allowed == {
        (Side.CLIENT, FrameType.INFER_REQUEST),
        (Side.SERVER, FrameType.INFER_REQUEST),
        (Side.CLIENT, FrameType.INFER_RESULT),
    }
    assert next_state(Side.SERVER, *_ready_out(FrameType.INFER_RESULT)) is None


def _ready_out(frame: FrameType) -> tuple[Any, Direction, FrameType]:
    from edgeswarm.wire import SessionState

    return (SessionState.READY, Direction.SEND, frame)


def test_edge_asks_and_gets_a_result_as_actions() -> None:
    client, server = heavy(Role.EDGE)
    client.send(request())
    roundtrip(client, server)
    [received] = events(server)
    assert isinstance(received, InferRequestReceived)
    assert received.request.model == "triage"
    assert received.request.count == 3
    server.send(
        Actions(
            tick=0,
            agent_ids=np.arange(3, dtype=np.uint32),
            actions=np.ones((3, 2), np.float32),
            request_id=1,
            status=InferStatus.OK,
        )
    )
    roundtrip(client, server)
    [got] = events(client)
    assert got.actions.request_id == 1  # type: ignore[union-attr]


def test_gateway_sends_batches_to_inference_nodes_only() -> None:
    node, server = heavy(Role.INFERENCE)
    server.send(request(n=5))
    roundtrip(node, server)
    [batch] = events(node)
    assert isinstance(batch, InferRequestReceived)
    assert batch.request.count == 5
    node.send(result(n=5))
    roundtrip(node, server)
    [answer] = events(server)
    assert isinstance(answer, InferResultReceived)
    assert answer.result.outputs.shape == (5, 2)

    edge, edge_server = heavy(Role.EDGE)
    with pytest.raises(LocalProtocolError):
        edge_server.send(request())  # batches go to inference nodes, not to edges
    with pytest.raises(LocalProtocolError):
        edge.send(result())  # only inference nodes answer


@pytest.mark.parametrize("role", [Role.ADMIN, Role.INFERENCE, Role.GATEWAY])
def test_only_edges_may_ask(role: Role) -> None:
    client, server = heavy(role)
    with pytest.raises(LocalProtocolError):
        client.send(request())
    client._out.append(encode_frame(request()))  # a client that ignores the rule anyway
    roundtrip(client, server)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME
    assert not server.closed  # not fatal: the session goes on


def test_without_the_feature_heavy_frames_are_unexpected() -> None:
    client, server = ready((), ())
    with pytest.raises(LocalProtocolError):
        client.send(request())
    client._out.append(encode_frame(request()))
    roundtrip(client, server)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME


# --- with the pre-auth limits and role rules of issue 13 --------------------


def test_the_largest_legal_inference_hello_fits_the_preauth_limits() -> None:
    """An inference node's HELLO names up to MAX_MODELS models: with the longest join
    token, features and names (4-byte characters), it is still read before WELCOME."""
    wide = "\U0001f600"
    hello = Hello(
        version=2,
        role=Role.INFERENCE,
        peer_id=wide * 128,
        public_key=PK,
        join_token=wide * 4096,
        features=tuple(wide * 63 + chr(0x1F600 + i) for i in range(32)),
        models=tuple(wide * 127 + chr(0x1F600 + i) for i in range(MAX_MODELS)),
        seq_epoch=2**63 - 1,
        state_incarnation=2**63 - 1,
    )
    payload = encode_payload(hello)
    assert len(payload) > 32 * 1024  # more than HELLO needed before the heavy lane
    assert decode_payload(payload, preauth=True) == hello
    server = Session(SessionConfig(is_client=False), now=0.0)
    server.receive_data(encode_frame(hello), 0.0)
    [received] = events(server)
    assert isinstance(received, HelloReceived)
    assert server.peer_hello == hello


def test_heavy_frames_past_the_preauth_limit_flow_once_welcomed() -> None:
    """The handshake's frame limit ends at WELCOME for inference nodes too: a batch
    and its result far above PREAUTH_MAX_FRAME_BYTES go both ways."""
    node, server = heavy(Role.INFERENCE)
    big = request(n=1000, k=64)  # ~260 KB
    assert len(encode_payload(big)) > PREAUTH_MAX_FRAME_BYTES
    server.send(big)
    roundtrip(node, server)
    [batch] = events(node)
    assert isinstance(batch, InferRequestReceived)
    node.send(
        InferResult(request_id=1, status=InferStatus.OK, outputs=np.ones((1000, 64), np.float32))
    )
    roundtrip(node, server)
    [answer] = events(server)
    assert isinstance(answer, InferResultReceived)
    assert answer.result.outputs.shape == (1000, 64)


def test_status_is_neither_asked_by_nor_sent_to_inference_nodes() -> None:
    node, server = heavy(Role.INFERENCE)
    with pytest.raises(LocalProtocolError):
        node.send(StatusRequest())
    with pytest.raises(LocalProtocolError):
        server.send(Status(gateway_id="gw", uptime_s=1.0, edges=()))
    server._out.append(encode_frame(Status(gateway_id="gw", uptime_s=1.0, edges=())))
    roundtrip(node, server)
    [violation] = events(node)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME


def test_a_batch_coalesced_with_welcome_is_read_under_the_full_limits() -> None:
    """The gateway may queue a node's first batch in the same write as its WELCOME:
    the node reads the batch after WELCOME, under WELCOME's limits, not the handshake's."""
    node = Session(SessionConfig(is_client=True), now=0.0)
    server = Session(SessionConfig(is_client=False), now=0.0)
    node.hello(
        Hello(version=2, public_key=PK, role=Role.INFERENCE, peer_id="n", features=(FEATURE_HEAVY,))
    )
    roundtrip(node, server)
    server.challenge(CHALLENGE)
    roundtrip(node, server)
    node.authenticate(AUTH)
    roundtrip(node, server)
    events(server)
    server.accept(welcome(FEATURE_HEAVY))
    big = request(n=1000, k=64)
    server.send(big)
    data = server.data_to_send()
    assert len(data) > PREAUTH_MAX_FRAME_BYTES
    node.receive_data(data, 0.0)
    got = [e for e in events(node) if not isinstance(e, ChallengeReceived)]
    assert [type(e) for e in got] == [Welcomed, InferRequestReceived]
    assert not node.closed
