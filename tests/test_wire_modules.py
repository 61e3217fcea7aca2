"""Module distribution on the wire (feature ``modules``): frames, limits, roles, state table."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeswarm.wire import (
    FEATURE_MODULES,
    FEATURES,
    BlobChunk,
    BlobChunkReceived,
    BlobRequest,
    BlobRequested,
    ErrorCode,
    Frame,
    LocalProtocolError,
    MalformedFrame,
    ModuleAssign,
    ModuleAssignment,
    ModuleReport,
    ModuleReportReceived,
    ModulesAssigned,
    ProtocolViolation,
    Role,
    Session,
    decode_payload,
    encode_frame,
    encode_payload,
)
from edgeswarm.wire.module_codec import MAX_ASSIGNMENTS, MAX_CHUNK_BYTES

from .test_wire_session import events, roundtrip
from .test_wire_state import ready

DIGEST = "sha256:" + "ab" * 32
MANIFEST = b'{"schema":"edgeswarm.module.v1"}'

FRAMES: list[Frame] = [
    ModuleAssign(
        (
            ModuleAssignment("flocking", MANIFEST),
            ModuleAssignment(
                "anomaly", MANIFEST, MANIFEST + b" ", share=0.1, labels=("canary",), rollout=7
            ),
        )
    ),
    ModuleReport("anomaly", "2.0.0", rollout=7, ticks=10, agent_ticks=1000, faults=3),
    BlobRequest(DIGEST, offset=4096, length=65536),
    BlobChunk(DIGEST, offset=0, size=10, data=b"0123456789"),
]


def modules(role: Role = Role.EDGE) -> tuple[Session, Session]:
    return ready((FEATURE_MODULES,), (FEATURE_MODULES,), role=role)


def as_map(frame: Any, **override: Any) -> dict[str, Any]:
    m: dict[str, Any] = msgpack.unpackb(encode_payload(frame))
    m.update(override)
    return m


def test_module_frames_round_trip() -> None:
    for frame in FRAMES:
        assert decode_payload(encode_payload(frame)) == frame


@given(
    offset=st.integers(0, 2**40),
    data=st.binary(min_size=1, max_size=64),
    extra=st.integers(0, 1000),
)
def test_blob_chunks_round_trip(offset: int, data: bytes, extra: int) -> None:
    chunk = BlobChunk(DIGEST, offset=offset, size=offset + len(data) + extra, data=data)
    assert decode_payload(encode_payload(chunk)) == chunk


@pytest.mark.parametrize(
    ("frame", "override"),
    [
        (FRAMES[2], {"digest": "sha256:AB"}),
        (FRAMES[2], {"digest": "md5:" + "0" * 67}),
        (FRAMES[2], {"length": 0}),
        (FRAMES[2], {"length": MAX_CHUNK_BYTES + 1}),
        (FRAMES[3], {"size": 5}),  # the chunk runs past its blob
        (FRAMES[3], {"data": b""}),
        (FRAMES[1], {"faults": 1001}),  # more faults than agent-ticks
        (FRAMES[1], {"module": ""}),
        (
            FRAMES[0],
            {
                "assignments": [
                    {"module": "x", "base": MANIFEST, "share": 1.5, "labels": [], "rollout": 0}
                ]
            },
        ),
        (
            FRAMES[0],
            {
                "assignments": [
                    {"module": "x", "base": b"", "share": 0.0, "labels": [], "rollout": 0}
                ]
            },
        ),
        (
            FRAMES[0],
            {
                "assignments": [
                    {"module": "x", "base": MANIFEST, "share": 0.0, "labels": [""], "rollout": 0}
                ]
            },
        ),
        (
            FRAMES[0],
            {
                "assignments": [
                    {"module": "x", "base": MANIFEST, "share": 0.0, "labels": "l", "rollout": 0}
                ]
            },
        ),
        (FRAMES[0], {"assignments": ["not a map"]}),
        (FRAMES[0], {"assignments": [{}] * (MAX_ASSIGNMENTS + 1)}),
    ],
)
def test_malformed_module_frames_are_refused(frame: Any, override: dict[str, Any]) -> None:
    with pytest.raises(MalformedFrame):
        decode_payload(msgpack.packb(as_map(frame, **override)))


def test_encoder_refuses_what_the_decoder_would() -> None:
    for bad in (
        BlobRequest("sha256:xyz", 0, 1),
        BlobRequest(DIGEST, 0, 0),
        BlobChunk(DIGEST, offset=5, size=6, data=b"ab"),
        ModuleReport("m", "1", rollout=1, ticks=1, agent_ticks=1, faults=2),
        ModuleAssign((ModuleAssignment("m", MANIFEST, share=2.0),)),
        ModuleAssign(tuple(ModuleAssignment("m", MANIFEST) for _ in range(MAX_ASSIGNMENTS + 1))),
        ModuleAssign((ModuleAssignment("", MANIFEST),)),
        ModuleAssign((ModuleAssignment("m", b""),)),
        ModuleAssign((ModuleAssignment("m", MANIFEST, target=b"x" * 65_537),)),
        ModuleAssign((ModuleAssignment("m", MANIFEST, labels=("",)),)),
        ModuleAssign((ModuleAssignment("m", MANIFEST, labels=("l",) * 33),)),
        ModuleReport("m" * 65, "1", rollout=1, ticks=1, agent_ticks=1, faults=0),
        ModuleReport("m", "", rollout=1, ticks=1, agent_ticks=1, faults=0),
        BlobChunk(DIGEST, offset=0, size=1, data=b""),
        BlobChunk(DIGEST, offset=0, size=MAX_CHUNK_BYTES + 1, data=b"x" * (MAX_CHUNK_BYTES + 1)),
    ):
        with pytest.raises(LocalProtocolError):
            encode_payload(bad)


def test_edge_is_assigned_fetches_a_blob_and_reports() -> None:
    edge, gateway = modules()
    gateway.send(FRAMES[0])
    roundtrip(edge, gateway)
    [assigned] = events(edge)
    assert isinstance(assigned, ModulesAssigned)
    assert assigned.assign.assignments[1].share == 0.1

    edge.send(BlobRequest(DIGEST, offset=0, length=10))
    roundtrip(edge, gateway)
    [asked] = events(gateway)
    assert isinstance(asked, BlobRequested)
    gateway.send(BlobChunk(DIGEST, offset=0, size=10, data=b"0123456789"))
    roundtrip(edge, gateway)
    [chunk] = events(edge)
    assert isinstance(chunk, BlobChunkReceived)
    assert chunk.chunk.data == b"0123456789"

    edge.send(FRAMES[1])
    roundtrip(edge, gateway)
    [report] = events(gateway)
    assert isinstance(report, ModuleReportReceived)
    assert report.report.faults == 3


@pytest.mark.parametrize("role", [Role.ADMIN, Role.INFERENCE, Role.GATEWAY])
def test_module_frames_are_between_the_gateway_and_edges_only(role: Role) -> None:
    client, server = modules(role)
    with pytest.raises(LocalProtocolError):
        client.send(FRAMES[2])
    with pytest.raises(LocalProtocolError):
        server.send(FRAMES[0])
    client._out.append(encode_frame(FRAMES[1]))  # a client that ignores the rule anyway
    roundtrip(client, server)
    [violation] = events(server)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME
    assert not server.closed


def test_module_frames_go_one_way_each() -> None:
    edge, gateway = modules()
    with pytest.raises(LocalProtocolError):
        edge.send(FRAMES[0])  # only the gateway assigns
    with pytest.raises(LocalProtocolError):
        gateway.send(FRAMES[2])  # only edges ask for blobs


def test_without_the_feature_module_frames_are_unexpected() -> None:
    edge, gateway = ready((), ())
    with pytest.raises(LocalProtocolError):
        edge.send(FRAMES[2])
    edge._out.append(encode_frame(FRAMES[2]))
    roundtrip(edge, gateway)
    [violation] = events(gateway)
    assert isinstance(violation, ProtocolViolation)
    assert violation.error.error_code is ErrorCode.UNEXPECTED_FRAME


def test_the_feature_is_offered_now_that_gateways_and_edges_serve_it() -> None:
    assert FEATURE_MODULES in FEATURES  # test_module_processes runs it over real QUIC
