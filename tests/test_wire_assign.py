"""ASSIGN and CHECKPOINT on the wire (feature ``placement``, edges only): codec, limits, gate."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest

from edgeswarm.wire import (
    FEATURE_PLACEMENT,
    AgentsAssigned,
    Assign,
    BatchTooLarge,
    Checkpoint,
    CheckpointReceived,
    ErrorCode,
    InvalidArray,
    LocalProtocolError,
    MalformedFrame,
    ProtocolViolation,
    Role,
    decode_payload,
    encode_frame,
    encode_payload,
)

from .test_wire_session import events, roundtrip
from .test_wire_state import ready


def assign(n: int = 5, **override: Any) -> Assign:
    fields: dict[str, Any] = {
        "epoch": 3,
        "part": 0,
        "parts": 1,
        "agent_ids": np.arange(10, 10 + n, dtype=np.uint32),
        "policy": (np.arange(n) % 2).astype(np.uint16),
        "ticks": np.arange(n, dtype=np.uint64) * 7,
        "state": np.arange(2 * n, dtype=np.float32).reshape(n, 2),
        "policy_names": ("boids", "drift"),
    }
    fields.update(override)
    return Assign(**fields)


def checkpoint(n: int = 4) -> Checkpoint:
    return Checkpoint(
        epoch=2,
        tick=99,
        agent_ids=np.array([9, 3, 7, 1][:n], dtype=np.uint32),
        ticks=np.full(n, 98, dtype=np.uint64),
        state=np.ones((n, 2), dtype=np.float32),
    )


def test_assign_round_trips() -> None:
    frame = assign()
    back = decode_payload(encode_payload(frame))
    assert isinstance(back, Assign)
    assert (back.epoch, back.part, back.parts, back.policy_names) == (3, 0, 1, ("boids", "drift"))
    for name in ("agent_ids", "policy", "ticks", "state"):
        assert np.array_equal(getattr(back, name), getattr(frame, name)), name


def test_checkpoint_round_trips() -> None:
    frame = checkpoint()
    back = decode_payload(encode_payload(frame))
    assert isinstance(back, Checkpoint)
    assert (back.epoch, back.tick) == (2, 99)
    for name in ("agent_ids", "ticks", "state"):
        assert np.array_equal(getattr(back, name), getattr(frame, name)), name


def assign_map(**override: Any) -> dict[str, Any]:
    m: dict[str, Any] = msgpack.unpackb(encode_payload(assign()))
    m.update(override)
    return m


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"part": 1, "parts": 1}, MalformedFrame),
        ({"policy_names": ["boids"]}, InvalidArray),  # index 1 has no name
        ({"policy_names": "boids"}, MalformedFrame),
        ({"policy_names": [""] * 2}, MalformedFrame),
        ({"epoch": -1}, MalformedFrame),
    ],
)
def test_malformed_assigns_are_refused(override: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_payload(msgpack.packb(assign_map(**override)))


def test_assign_ids_must_ascend_and_rows_must_match() -> None:
    unordered = assign(agent_ids=np.array([10, 12, 11, 13, 14], dtype=np.uint32))
    with pytest.raises(InvalidArray, match="ascending"):
        decode_payload(encode_payload(unordered))
    m = assign_map()
    m["ticks"] = msgpack.unpackb(encode_payload(assign(n=4)))["ticks"]
    with pytest.raises(InvalidArray, match="ticks has 4 rows"):
        decode_payload(msgpack.packb(m))


def test_checkpoint_ids_must_not_repeat_nor_exceed_the_batch_limit() -> None:
    m: dict[str, Any] = msgpack.unpackb(encode_payload(checkpoint()))
    m["agent_ids"] = msgpack.unpackb(
        encode_payload(
            Checkpoint(
                epoch=0,
                tick=0,
                agent_ids=np.array([1, 1, 2, 3], dtype=np.uint32),
                ticks=np.zeros(4, np.uint64),
                state=np.zeros((4, 2), np.float32),
            )
        )
    )["agent_ids"]
    with pytest.raises(InvalidArray, match="repeat"):
        decode_payload(msgpack.packb(m))
    with pytest.raises(BatchTooLarge):
        decode_payload(encode_payload(checkpoint()), max_batch_agents=3)


def test_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload(assign(part=2, parts=2))
    with pytest.raises(LocalProtocolError):
        encode_payload(assign(policy_names=("boids",)))
    with pytest.raises(LocalProtocolError):
        encode_payload(assign(ticks=np.zeros(3, np.uint64)))


def test_the_gateway_assigns_and_the_edge_checkpoints() -> None:
    edge, gateway = ready((FEATURE_PLACEMENT,), (FEATURE_PLACEMENT,), role=Role.EDGE)
    gateway.send(assign())
    roundtrip(edge, gateway)
    [assigned] = events(edge)
    assert isinstance(assigned, AgentsAssigned)
    assert assigned.assign.count == 5
    edge.send(checkpoint())
    roundtrip(edge, gateway)
    [received] = events(gateway)
    assert isinstance(received, CheckpointReceived)
    assert received.checkpoint.count == 4


@pytest.mark.parametrize("role", [Role.ADMIN, Role.INFERENCE, Role.GATEWAY])
def test_only_edges_checkpoint(role: Role) -> None:
    client, server = ready((FEATURE_PLACEMENT,), (FEATURE_PLACEMENT,), role=role)
    with pytest.raises(LocalProtocolError):
        client.send(checkpoint())
    with pytest.raises(LocalProtocolError):
        server.send(assign())
    client._out.append(encode_frame(checkpoint()))  # a client that ignores the rule anyway
    roundtrip(client, server)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME


def test_without_the_feature_a_checkpoint_is_unexpected() -> None:
    edge, gateway = ready((), (), role=Role.EDGE)
    with pytest.raises(LocalProtocolError):
        gateway.send(assign())
    edge._out.append(encode_frame(checkpoint()))
    roundtrip(edge, gateway)
    [violation] = events(gateway)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME
