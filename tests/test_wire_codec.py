"""Codec of protocol v1: round trips, zero-copy arrays, hostile input, framing."""

from __future__ import annotations

import contextlib
import dataclasses
import struct
import tracemalloc
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeswarm.wire import (
    Ack,
    Actions,
    Assign,
    Auth,
    BatchHeader,
    BatchTooLarge,
    Bye,
    Challenge,
    Checkpoint,
    EdgeStatus,
    Error,
    ErrorCode,
    Frame,
    FrameReader,
    FrameTooLarge,
    FrameType,
    Hello,
    InferRequest,
    InferResult,
    InferStatus,
    InvalidArray,
    LocalProtocolError,
    MalformedFrame,
    ObservationBatch,
    PlacementReply,
    PlacementRequest,
    Redirect,
    RemoteProtocolError,
    Role,
    StateSyncRequest,
    StateUpdate,
    Status,
    StatusRequest,
    UnknownFrameType,
    Welcome,
    decode_array,
    decode_payload,
    encode_array,
    encode_frame,
    encode_payload,
)
from edgeswarm.wire.codec import PREAUTH_MAX_FRAME_BYTES, UINT63_MAX

from .test_replica_merge import REGISTRY_FRAMES
from .test_wire_assign import assign, checkpoint
from .test_wire_modules import FRAMES as MODULE_FRAMES

PK = bytes(range(32))

U64 = 2**64 - 1


def make_batch(n: int = 3, k: int = 4, seq: int = 1, tick: int = 7) -> ObservationBatch:
    return ObservationBatch(
        seq=seq,
        tick=tick,
        agent_ids=np.arange(n, dtype=np.uint32),
        observations=np.arange(n * k, dtype=np.float32).reshape(n, k),
        rewards=np.linspace(0, 1, n, dtype=np.float32),
    )


def make_actions(n: int = 3, k: int = 2) -> Actions:
    return Actions(
        tick=9,
        agent_ids=np.arange(n, dtype=np.uint32) + 10,
        actions=np.ones((n, k), dtype=np.float32),
    )


def assert_frames_equal(a: Frame, b: Frame) -> None:
    assert type(a) is type(b)
    if isinstance(a, Assign | Checkpoint):  # columns of agent rows
        assert (a.epoch, a.count) == (b.epoch, b.count)  # type: ignore[union-attr]
        for name in ("agent_ids", "ticks", "state"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    elif isinstance(a, ObservationBatch):
        assert isinstance(b, ObservationBatch)
        assert (a.seq, a.tick) == (b.seq, b.tick)
        np.testing.assert_array_equal(a.agent_ids, b.agent_ids)
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        assert b.agent_ids.dtype == np.dtype("<u4")
        assert b.observations.dtype == np.dtype("<f4")
    elif isinstance(a, Actions):
        assert isinstance(b, Actions)
        assert (a.tick, a.request_id, a.status) == (b.tick, b.request_id, b.status)
        np.testing.assert_array_equal(a.agent_ids, b.agent_ids)
        np.testing.assert_array_equal(a.actions, b.actions)
    elif isinstance(a, InferRequest):
        assert isinstance(b, InferRequest)
        assert (a.request_id, a.model, a.deadline_ms, a.tick) == (
            b.request_id,
            b.model,
            b.deadline_ms,
            b.tick,
        )
        np.testing.assert_array_equal(a.agent_ids, b.agent_ids)
        np.testing.assert_array_equal(a.inputs, b.inputs)
        assert b.inputs.dtype == np.dtype("<f4")
    elif isinstance(a, InferResult):
        assert isinstance(b, InferResult)
        assert (a.request_id, a.status, a.message) == (b.request_id, b.status, b.message)
        np.testing.assert_array_equal(a.outputs, b.outputs)
    else:
        assert a == b


def roundtrip(frame: Frame) -> Frame:
    data = encode_frame(frame)
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    assert data[4:] == encode_payload(frame)
    return decode_payload(data[4:])


def payload(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def arr_map(dtype: object, shape: list[Any], data: object) -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data": data}


def batch_map(**override: Any) -> dict[str, Any]:
    m = msgpack.unpackb(encode_payload(make_batch()))
    m.update(override)
    return m  # type: ignore[no-any-return]


ALL_FRAMES: list[Frame] = [
    Redirect(gateway_id="gw-b", host="gw-b.example", port=4433, reason="owner"),
    Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="edge-1", agents=64),
    Hello(version=2, public_key=PK, role=Role.ADMIN, peer_id="ops"),
    Hello(version=2, public_key=PK, role=Role.INFERENCE, peer_id="gpu-0", join_token="tok"),
    Challenge(nonce=bytes(32), gateway_id="gw"),
    Auth(signature=bytes(range(64))),
    Welcome(
        version=2, session_id="s-1", gateway_id="gw", max_frame_bytes=1 << 24, max_batch_agents=9
    ),
    Welcome(
        version=2,
        session_id="s-2",
        gateway_id="gw",
        max_frame_bytes=1 << 24,
        max_batch_agents=9,
        credit=64,
        resume_seq=U64,
    ),
    make_batch(),
    make_batch(n=0, k=1),
    Ack(seq=U64, accepted=3),
    Ack(seq=1, accepted=3, credit=77),
    make_actions(),
    StatusRequest(),
    Status(gateway_id="gw", uptime_s=1.5),
    Status(
        gateway_id="gw",
        uptime_s=12.25,
        edges=(
            EdgeStatus(
                peer_id="e",
                connected=True,
                agents=4,
                batches=5,
                observations=20,
                bytes=999,
                last_seq=5,
                errors=0,
            ),
        ),
    ),
    Error(code=ErrorCode.INVALID_ARRAY, message="bad", seq=4),
    Error(code=ErrorCode.MALFORMED_FRAME, message=""),
    Bye(code=ErrorCode.NO_ERROR),
    Bye(code=ErrorCode.SHUTTING_DOWN, reason="bye"),
    Hello(version=2, public_key=PK, role=Role.GATEWAY, peer_id="gw-b", features=("state",)),
    Welcome(
        version=2,
        session_id="s-3",
        gateway_id="gw",
        max_frame_bytes=1 << 24,
        max_batch_agents=9,
        features=("state",),
    ),
    StateSyncRequest(state_vector=b"\x00"),
    StateUpdate(update=b"\x00\x00"),
    Hello(
        version=2,
        public_key=PK,
        role=Role.INFERENCE,
        peer_id="node-0",
        features=("heavy",),
        models=("triage", "anomaly"),
    ),
    Welcome(
        version=2,
        session_id="s-4",
        gateway_id="gw",
        max_frame_bytes=1 << 24,
        max_batch_agents=9,
        features=("heavy",),
        infer_window=64,
    ),
    Welcome(
        version=2,
        session_id="s-5",
        gateway_id="gw",
        max_frame_bytes=1 << 24,
        max_batch_agents=9,
        features=("placement",),
        lease_ms=15_000,
        lease_ticks=50,
    ),
    InferRequest(
        request_id=U64,
        model="triage",
        deadline_ms=50,
        tick=3,
        agent_ids=np.arange(4, dtype=np.uint32),
        inputs=np.arange(32, dtype=np.float32).reshape(4, 8),
    ),
    InferResult(request_id=7, status=InferStatus.OK, outputs=np.ones((4, 2), dtype=np.float32)),
    PlacementRequest(request_id=1, op="edges.drain", args={"edge_id": "edge-1"}),
    PlacementReply(request_id=1, ok=True, result={"epoch": 3, "moves": [1, 2]}),
    PlacementReply(request_id=2, ok=False, message="edge 'x' is not a member"),
    InferResult(
        request_id=8,
        status=InferStatus.FAILED,
        outputs=np.zeros((0, 1), dtype=np.float32),
        message="no such model",
    ),
    Actions(
        tick=4,
        agent_ids=np.arange(2, dtype=np.uint32),
        actions=np.ones((2, 2), dtype=np.float32),
        request_id=5,
        status=InferStatus.OK,
    ),
    Actions(
        tick=4,
        agent_ids=np.zeros(0, dtype=np.uint32),
        actions=np.zeros((0, 1), dtype=np.float32),
        request_id=6,
        status=InferStatus.TIMEOUT,
    ),
    *MODULE_FRAMES,
    *REGISTRY_FRAMES,
    assign(),
    checkpoint(),
]


@pytest.mark.parametrize("frame", ALL_FRAMES, ids=lambda f: type(f).__name__)
def test_round_trip_every_frame(frame: Frame) -> None:
    assert_frames_equal(frame, roundtrip(frame))


def test_every_frame_type_covered() -> None:
    covered = {msgpack.unpackb(encode_payload(f))["t"] for f in ALL_FRAMES}
    assert covered == {int(t) for t in FrameType}


def test_enums_travel_as_values() -> None:
    m = msgpack.unpackb(
        encode_payload(Hello(version=2, public_key=PK, role=Role.ADMIN, peer_id="x"))
    )
    assert m == {
        "t": 1,
        "version": 2,
        "role": "admin",
        "peer_id": "x",
        "public_key": PK,
        "agents": 0,
    }
    m = msgpack.unpackb(encode_payload(Error(code=ErrorCode.UNEXPECTED_FRAME, message="m")))
    assert m == {"t": 8, "code": 6, "message": "m"}


def test_hello_bytes_match_documented_example() -> None:
    data = encode_frame(Hello(version=2, public_key=PK, role=Role.EDGE, peer_id="e1", agents=2))
    assert data.hex(" ") == (
        "00 00 00 57 86 a1 74 01 a7 76 65 72 73 69 6f 6e 02 a4 72 6f 6c 65 a4 65 64 67 65 "
        "a7 70 65 65 72 5f 69 64 a2 65 31 aa 70 75 62 6c 69 63 5f 6b 65 79 c4 20 "
        + " ".join(f"{b:02x}" for b in range(32))
        + " a6 61 67 65 6e 74 73 02"
    )


def test_unknown_keys_ignored_and_optional_fields() -> None:
    frame = decode_payload(payload({"t": 4, "seq": 1, "accepted": 2, "future": [1, 2]}))
    assert frame == Ack(seq=1, accepted=2, credit=0)
    assert decode_payload(payload({"t": 8, "code": 1, "message": "x", "seq": None})) == Error(
        code=1, message="x"
    )
    assert decode_payload(payload({"t": 9, "code": 0})) == Bye(code=0)
    hello = {"t": 1, "version": 2, "role": "edge", "peer_id": "p", "public_key": PK}
    assert decode_payload(payload(hello)) == Hello(
        version=2, public_key=PK, role=Role.EDGE, peer_id="p"
    )
    with pytest.raises(MalformedFrame, match="public_key"):
        decode_payload(payload({**hello, "public_key": PK[:31]}))


def test_status_accepts_integer_uptime() -> None:
    frame = decode_payload(payload({"t": 7, "gateway_id": "g", "uptime_s": 3, "edges": []}))
    assert frame == Status(gateway_id="g", uptime_s=3.0)


# --- hypothesis round trips -------------------------------------------------

u64 = st.integers(min_value=0, max_value=U64)
u63 = st.integers(min_value=0, max_value=2**63 - 1)
ident = st.text(min_size=1, max_size=128)
f32 = st.floats(width=32, allow_nan=False)


@st.composite
def batches(draw: st.DrawFn) -> ObservationBatch:
    n = draw(st.integers(0, 40))
    k = draw(st.integers(1, 1024 if n < 4 else 16))
    obs = draw(st.lists(f32, min_size=n * k, max_size=n * k))
    ids = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n))
    rewards = draw(st.lists(f32, min_size=n, max_size=n))
    return ObservationBatch(
        seq=draw(u63),
        tick=draw(u63),
        agent_ids=np.array(ids, dtype=np.uint32),
        observations=np.array(obs, dtype=np.float32).reshape(n, k),
        rewards=np.array(rewards, dtype=np.float32),
    )


@st.composite
def actions(draw: st.DrawFn) -> Actions:
    n = draw(st.integers(0, 40))
    k = draw(st.integers(1, 32))
    acts = draw(st.lists(f32, min_size=n * k, max_size=n * k))
    return Actions(
        tick=draw(u64),
        agent_ids=np.arange(n, dtype=np.uint32),
        actions=np.array(acts, dtype=np.float32).reshape(n, k),
    )


edge_status = st.builds(
    EdgeStatus,
    peer_id=ident,
    connected=st.booleans(),
    agents=u64,
    batches=u64,
    observations=u64,
    bytes=u64,
    last_seq=u64,
    errors=u64,
)

frames = st.one_of(
    st.builds(
        Hello,
        version=u64,
        role=st.sampled_from(Role),
        peer_id=ident,
        public_key=st.binary(min_size=32, max_size=32),
        agents=u64,
        join_token=st.none() | st.text(min_size=1, max_size=64),
    ),
    st.builds(Challenge, nonce=st.binary(min_size=32, max_size=32), gateway_id=ident),
    st.builds(Auth, signature=st.binary(min_size=64, max_size=64)),
    st.builds(
        Welcome,
        version=u64,
        session_id=ident,
        gateway_id=ident,
        max_frame_bytes=u64,
        max_batch_agents=u64,
    ),
    batches(),
    st.builds(Ack, seq=u64, accepted=u64),
    actions(),
    st.just(StatusRequest()),
    st.builds(
        Status,
        gateway_id=ident,
        uptime_s=st.floats(allow_nan=False),
        edges=st.lists(edge_status, max_size=4).map(tuple),
    ),
    st.builds(Error, code=u64, message=st.text(max_size=200), seq=st.none() | u64),
    st.builds(Bye, code=u64, reason=st.text(max_size=200)),
)


@given(frames)
@settings(max_examples=300, deadline=None)
def test_round_trip_property(frame: Frame) -> None:
    assert_frames_equal(frame, roundtrip(frame))


@given(
    dtype=st.sampled_from(["|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"]),
    shape=st.lists(st.integers(0, 6), min_size=0, max_size=3),
)
@settings(deadline=None)
def test_array_round_trip_property(dtype: str, shape: list[int]) -> None:
    arr = (np.arange(int(np.prod(shape)), dtype=np.int64) % 100).astype(dtype).reshape(shape)
    packed = msgpack.unpackb(payload(encode_array(arr)))
    out = decode_array(packed, dtype=dtype, ndim=len(shape))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(arr, out)


# --- zero copy ----------------------------------------------------------------


def base_chain_root(arr: np.ndarray[Any, Any]) -> object:
    obj: object = arr
    while isinstance(obj, np.ndarray) and obj.base is not None:
        obj = obj.base
    return obj


def test_decoded_arrays_are_views_on_the_received_bytes() -> None:
    frame = decode_payload(encode_payload(make_batch(n=100, k=8)))
    assert isinstance(frame, ObservationBatch)
    for arr in (frame.agent_ids, frame.observations, frame.rewards):
        assert isinstance(base_chain_root(arr), bytes)
        assert not arr.flags.writeable


def test_decode_array_shares_memory_with_bin() -> None:
    data = np.arange(12, dtype="<f4").tobytes()
    out = decode_array(arr_map("<f4", [3, 4], data), dtype="<f4", ndim=2)
    assert np.shares_memory(out, np.frombuffer(data, dtype=np.uint8))
    assert out.base is not None


def test_encode_array_does_not_copy() -> None:
    arr = np.arange(20, dtype="<f4").reshape(4, 5)
    data = encode_array(arr)["data"]
    assert isinstance(data, memoryview)
    assert np.shares_memory(np.frombuffer(data, dtype=np.uint8), arr)


def test_encode_array_converts_big_endian_and_strided() -> None:
    arr = np.arange(6, dtype=">i4")
    m = encode_array(arr[::2])
    assert m["dtype"] == "<i4"
    assert m["shape"] == [3]
    assert bytes(m["data"]) == np.array([0, 2, 4], dtype="<i4").tobytes()
    with pytest.raises(LocalProtocolError):
        encode_array(np.zeros(3, dtype=np.float16))


def test_large_batch_decodes_without_per_element_work() -> None:
    n, k = 65536, 16  # 4 MiB of observations
    data = encode_payload(make_batch(n=n, k=k))
    tracemalloc.start()
    try:
        frame = decode_payload(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(frame, ObservationBatch)
    assert frame.observations.shape == (n, k)
    # msgpack copies each bin once; per-element Python objects would need ~10x more.
    assert peak < 1.5 * len(data)


def test_frame_encode_rejects_bad_local_arrays() -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload(
            ObservationBatch(
                seq=1,
                tick=1,
                agent_ids=np.arange(3, dtype=np.int64),  # type: ignore[arg-type]
                observations=np.zeros((3, 2), np.float32),
                rewards=np.zeros(3, np.float32),
            )
        )
    with pytest.raises(LocalProtocolError):
        encode_payload(
            ObservationBatch(
                seq=1,
                tick=1,
                agent_ids=np.arange(3, dtype=np.uint32),
                observations=np.zeros((2, 2), np.float32),
                rewards=np.zeros(3, np.float32),
            )
        )
    # float64 observations are converted to float32
    ok = ObservationBatch(
        seq=1,
        tick=1,
        agent_ids=np.arange(2, dtype=np.uint32),
        observations=np.zeros((2, 2)),  # type: ignore[arg-type]
        rewards=np.zeros(2),  # type: ignore[arg-type]
    )
    out = decode_payload(encode_payload(ok))
    assert isinstance(out, ObservationBatch)
    assert out.observations.dtype == np.float32


# --- hostile input ------------------------------------------------------------


@given(st.binary(max_size=512))
@settings(max_examples=500, deadline=None)
def test_random_bytes_raise_only_remote_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_payload(data)


@given(
    st.dictionaries(
        st.sampled_from(["t", "seq", "tick", "agent_ids", "observations", "rewards", "x"]),
        st.none()
        | st.integers(-(2**63), U64)
        | st.text(max_size=5)
        | st.binary(max_size=16)
        | st.lists(st.integers(-3, 3), max_size=3)
        | st.fixed_dictionaries(
            {"dtype": st.sampled_from(["<u4", "<f4", "<f8", "zz"]), "shape": st.just([2])},
            optional={"data": st.binary(max_size=16)},
        ),
    )
)
@settings(max_examples=500, deadline=None)
def test_random_maps_raise_only_remote_errors(m: dict[str, Any]) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_payload(payload(m))


def _outcome(data: bytes, **kwargs: Any) -> tuple[Any, ...]:
    """(seq, tick, count) of the OBS_BATCH in ``data``, or the error it raises."""
    try:
        frame = decode_payload(data, **kwargs)
    except RemoteProtocolError as exc:
        return type(exc), str(exc), exc.seq
    assert isinstance(frame, ObservationBatch | BatchHeader)
    return frame.seq, frame.tick, frame.count


@st.composite
def _obs_batch_maps(draw: st.DrawFn) -> dict[str, Any]:
    """OBS_BATCH maps, each part either right or broken in one of many ways."""
    n, k = draw(st.integers(0, 5)), draw(st.integers(0, 2))

    def array(dtype: str, shape: list[int]) -> Any:
        right = arr_map(dtype, shape, bytes(4 * int(np.prod(shape))))
        broken = st.fixed_dictionaries(
            {
                "dtype": st.sampled_from(["<u4", "<f4", "<f8", ">u4", "zz"]),
                "shape": st.lists(st.integers(-1, 3), max_size=3),
            },
            optional={"data": st.binary(max_size=40) | st.text(max_size=2)},
        )
        return draw(st.just(right) | st.just(right) | st.just(right) | broken)

    m = {
        "t": int(FrameType.OBS_BATCH),
        "seq": draw(st.sampled_from([1, 2, 3, U64, -1, b"x"])),
        "tick": draw(st.sampled_from([0, 7, 8, U64, 1.5])),
        "agent_ids": array("<u4", [n]),
        "observations": array("<f4", [draw(st.sampled_from([n, n, n + 1])), k]),
        "rewards": array("<f4", [draw(st.sampled_from([n, n, max(n - 1, 0)]))]),
    }
    if draw(st.integers(0, 5)) == 0:
        del m[draw(st.sampled_from(sorted(m)))]
    return m


@given(_obs_batch_maps(), st.integers(0, 6))
@settings(max_examples=1000, deadline=None)
def test_batch_header_checks_exactly_what_the_full_decode_checks(
    m: dict[str, Any], max_batch_agents: int
) -> None:
    data = payload(m)
    full = _outcome(data, max_batch_agents=max_batch_agents)
    assert _outcome(data, max_batch_agents=max_batch_agents, batch_arrays=False) == full


def test_batch_header_of_a_valid_batch() -> None:
    batch = make_batch(n=5)
    header = decode_payload(encode_payload(batch), batch_arrays=False)
    assert header == BatchHeader(seq=batch.seq, tick=batch.tick, count=5)
    assert isinstance(header, BatchHeader)
    assert header.agent_ids is not None
    assert np.array_equal(header.agent_ids, batch.agent_ids)
    ack = Ack(seq=3, accepted=1)  # other frames decode as always
    assert decode_payload(encode_payload(ack), batch_arrays=False) == ack


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (payload([1, 2, 3]), MalformedFrame),
        (payload("hello"), MalformedFrame),
        (b"", MalformedFrame),
        (b"\xc1", MalformedFrame),
        (payload({"t": 4, "seq": 1, "accepted": 1}) + b"\x00", MalformedFrame),
        (payload({1: 2}), MalformedFrame),
        (payload({"seq": 1}), MalformedFrame),
        (payload({"t": "4", "seq": 1, "accepted": 1}), MalformedFrame),
        (payload({"t": 99}), UnknownFrameType),
        (payload({"t": 4, "seq": 1}), MalformedFrame),
        (payload({"t": 4, "seq": -1, "accepted": 1}), MalformedFrame),
        (payload({"t": 4, "seq": 1.0, "accepted": 1}), MalformedFrame),
        (payload({"t": 4, "seq": True, "accepted": 1}), MalformedFrame),
        (payload({"t": 1, "version": 1, "role": "root", "peer_id": "p"}), MalformedFrame),
        (payload({"t": 1, "version": 1, "role": "edge", "peer_id": ""}), MalformedFrame),
        (payload({"t": 1, "version": 1, "role": "edge", "peer_id": "p" * 129}), MalformedFrame),
        (payload({"t": 7, "gateway_id": "g", "uptime_s": 1.0, "edges": [1]}), MalformedFrame),
        (payload({"t": 8, "code": 1, "message": "m", "seq": "x"}), MalformedFrame),
        (b"\x91" * 100_000, MalformedFrame),  # deeply nested arrays
        (b"\x81\xa1a" * 10_000 + b"\x00", MalformedFrame),  # deeply nested maps
        (b"\xdd\xff\xff\xff\xff", MalformedFrame),  # array32 of 4 G entries, no body
        (b"\xdf\xff\xff\xff\xff", MalformedFrame),  # map32 of 4 G entries
        (b"\xc6\xff\xff\xff\xff", MalformedFrame),  # bin32 of 4 GiB
        (b"\xdb\x7f\xff\xff\xff", MalformedFrame),  # str32 of 2 GiB
        (b"\xc9\x00\x00\x00\x02\x01ab", MalformedFrame),  # ext types are not allowed
    ],
)
def test_malformed_input(raw: bytes, error: type[RemoteProtocolError]) -> None:
    with pytest.raises(error):
        decode_payload(raw)


@pytest.mark.parametrize(
    "override",
    [
        {"agent_ids": arr_map("<u8", [3], bytes(24))},  # wrong dtype
        {"agent_ids": arr_map("<f2", [3], bytes(6))},  # dtype outside the whitelist
        {"agent_ids": arr_map(">u4", [3], bytes(12))},  # big-endian
        {"agent_ids": arr_map("<u4", [3, 1], bytes(12))},  # wrong ndim
        {"agent_ids": arr_map("<u4", [3], bytes(11))},  # shape/bytes mismatch
        {"agent_ids": arr_map("<u4", [-3], b"")},  # negative dimension
        {"agent_ids": arr_map("<u4", [3], "abc")},  # data not bin
        {"agent_ids": arr_map("<u4", [2**40], bytes(12))},  # huge declared length
        {"observations": arr_map("<f4", [2**31, 2**31], bytes(12))},  # huge product
        {"observations": arr_map("<f4", [0, 2**40], b"")},  # huge empty dimension
        {"agent_ids": [1, 2, 3]},  # not an array map
        {"rewards": arr_map("<f4", [2], bytes(8))},  # n mismatch
        {"observations": arr_map("<f4", [2, 4], bytes(32))},  # n mismatch
        {"observations": arr_map("<f4", [3, 0], b"")},  # k = 0
        {"observations": arr_map("<f4", [1, 1025], bytes(4100))},  # k too large
    ],
)
@pytest.mark.parametrize("batch_arrays", [True, False])
def test_invalid_arrays(override: dict[str, Any], batch_arrays: bool) -> None:
    with pytest.raises(InvalidArray) as info:
        decode_payload(payload(batch_map(**override)), batch_arrays=batch_arrays)
    assert info.value.seq == 1


def test_missing_array_field_is_malformed() -> None:
    m = batch_map()
    del m["rewards"]
    with pytest.raises(MalformedFrame):
        decode_payload(payload(m))


@pytest.mark.parametrize("batch_arrays", [True, False])
def test_too_many_agents(batch_arrays: bool) -> None:
    data = encode_payload(make_batch(n=10))
    decoded = decode_payload(data, max_batch_agents=10, batch_arrays=batch_arrays)
    assert isinstance(decoded, ObservationBatch if batch_arrays else BatchHeader)
    with pytest.raises(BatchTooLarge) as info:
        decode_payload(data, max_batch_agents=9, batch_arrays=batch_arrays)
    assert info.value.seq == 1
    with pytest.raises(BatchTooLarge):
        decode_payload(encode_payload(make_actions(n=10)), max_batch_agents=9)


# --- framing --------------------------------------------------------------------


def test_reader_byte_by_byte() -> None:
    frames_in = [make_batch(seq=i) for i in range(1, 4)]
    stream = b"".join(encode_frame(f) for f in frames_in)
    reader = FrameReader()
    out: list[bytes] = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        while (p := reader.next_payload()) is not None:
            out.append(p)
    assert out == [encode_payload(f) for f in frames_in]
    assert reader.buffered == 0


def test_reader_many_frames_in_one_chunk() -> None:
    acks = [Ack(seq=i, accepted=i) for i in range(20_000)]
    reader = FrameReader()
    reader.feed(b"".join(encode_frame(a) for a in acks))
    out = []
    while (p := reader.next_payload()) is not None:
        out.append(decode_payload(p))
    assert out == acks


def test_reader_large_frame_in_many_chunks() -> None:
    frame = make_batch(n=20_000, k=16)
    data = encode_frame(frame)
    reader = FrameReader()
    for i in range(0, len(data), 1000):
        assert reader.next_payload() is None
        reader.feed(memoryview(data)[i : i + 1000])
    p = reader.next_payload()
    assert p == data[4:]
    assert reader.next_payload() is None


def test_reader_empty_payload_and_exact_limit() -> None:
    reader = FrameReader(max_frame_bytes=3)
    reader.feed(b"\x00\x00\x00\x00\x00\x00\x00\x03abc")
    assert reader.next_payload() == b""
    assert reader.next_payload() == b"abc"


def test_reader_oversize_prefix() -> None:
    reader = FrameReader(max_frame_bytes=1024)
    reader.feed(struct.pack(">I", 1025))
    with pytest.raises(FrameTooLarge) as info:
        reader.next_payload()
    assert info.value.fatal
    with pytest.raises(FrameTooLarge):  # the stream cannot be resynced
        reader.next_payload()


@pytest.mark.parametrize("field", ["seq", "tick"])
def test_batch_seq_and_tick_above_2_63_are_malformed(field: str) -> None:
    """seq and tick are stored as SQLite integers (signed 64-bit): the protocol says
    0..2**63-1, and a larger value is refused at decode, never at the store."""
    body = msgpack.unpackb(encode_payload(make_batch()), raw=False)
    body[field] = 2**63
    with pytest.raises(MalformedFrame, match=field):
        decode_payload(msgpack.packb(body, use_bin_type=True))
    with pytest.raises(MalformedFrame, match=field):
        decode_payload(msgpack.packb(body, use_bin_type=True), batch_arrays=False)
    body[field] = 2**63 - 1
    decoded = decode_payload(msgpack.packb(body, use_bin_type=True))
    assert getattr(decoded, field) == 2**63 - 1
    with pytest.raises(LocalProtocolError):
        encode_payload(make_batch(**{field: 2**63}))


def test_preauth_limits_refuse_big_containers_before_any_large_allocation() -> None:
    """Before WELCOME a payload is unpacked with the handshake's limits: a map of
    many keys, a long list, or more than PREAUTH_MAX_FRAME_BYTES is malformed."""
    hello = {"t": 1, "version": 2, "role": "edge", "peer_id": "e", "public_key": PK}
    decode_payload(msgpack.packb(hello, use_bin_type=True), preauth=True)
    many_keys = dict(hello, **{f"k{i}": 0 for i in range(100)})
    long_list = dict(hello, junk=[[]] * 1000)
    huge = dict(hello, junk=b"x" * PREAUTH_MAX_FRAME_BYTES)
    for body in (many_keys, long_list, huge):
        payload = msgpack.packb(body, use_bin_type=True)
        decode_payload(payload)  # legal once authenticated (unknown keys are ignored)
        with pytest.raises(MalformedFrame):
            decode_payload(payload, preauth=True)


# --- what the survivors of mutation testing asked for ------------------------------------
# The texts below reach the peer in ERROR frames (decoding) or the programmer (encoding).

HELLO_MAP = {
    "t": int(FrameType.HELLO),
    "version": 2,
    "role": "edge",
    "peer_id": "p",
    "public_key": PK,
}
STATUS_MAP = {"t": int(FrameType.STATUS), "gateway_id": "g", "uptime_s": 1.0}
EDGE_MAP = {
    "peer_id": "e", "connected": True, "agents": 1, "batches": 1, "observations": 1,
    "bytes": 1, "last_seq": 1, "errors": 0,
}  # fmt: skip
ACTIONS_MAP = msgpack.unpackb(encode_payload(make_actions(n=3, k=2)))


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"t": int(FrameType.ACK), "accepted": 1}, MalformedFrame, "missing field 'seq'"),
        ({"t": int(FrameType.ACK), "seq": -1, "accepted": 1}, MalformedFrame,
         "field 'seq' must be an integer in 0..2**64-1, got -1"),
        ({**HELLO_MAP, "peer_id": 5}, MalformedFrame,
         "field 'peer_id' must be a string of 1..128 characters"),
        ({**HELLO_MAP, "role": "root"}, MalformedFrame,
         "field 'role' must be one of edge, admin, inference, gateway, got 'root'"),
        ({**HELLO_MAP, "features": "state"}, MalformedFrame,
         "field 'features' must be an array of at most 32"),
        ({**HELLO_MAP, "features": ["f"] * 33}, MalformedFrame,
         "field 'features' must be an array of at most 32"),
        ({**HELLO_MAP, "features": [""]}, MalformedFrame,
         "every entry of 'features' must be a string of 1..64 characters"),
        ({**HELLO_MAP, "features": ["f" * 65]}, MalformedFrame,
         "every entry of 'features' must be a string of 1..64 characters"),
        ({**HELLO_MAP, "features": [7]}, MalformedFrame,
         "every entry of 'features' must be a string of 1..64 characters"),
        ({"t": int(FrameType.CHALLENGE), "nonce": b"n", "gateway_id": "g"}, MalformedFrame,
         "field 'nonce' must be 32 bytes of bin"),
        ({"t": int(FrameType.STATE_SYNC), "state_vector": b""}, MalformedFrame,
         "field 'state_vector' must be 1..1048576 bytes of bin"),
        ({"t": int(FrameType.STATE_SYNC), "state_vector": "sv"}, MalformedFrame,
         "field 'state_vector' must be 1..1048576 bytes of bin"),
        ({"t": int(FrameType.STATE_SYNC), "state_vector": bytes((1 << 20) + 1)}, MalformedFrame,
         "field 'state_vector' must be 1..1048576 bytes of bin"),
        ({**STATUS_MAP, "edges": {}}, MalformedFrame, "field 'edges' must be an array"),
        ({**STATUS_MAP, "edges": [1]}, MalformedFrame, "every entry of 'edges' must be a map"),
        ({**STATUS_MAP, "edges": [{**EDGE_MAP, "connected": 1}]}, MalformedFrame,
         "field 'connected' must be a boolean"),
        ({**STATUS_MAP, "uptime_s": "1"}, MalformedFrame, "field 'uptime_s' must be a number"),
        ({**ACTIONS_MAP, "actions": arr_map("<f4", [2, 2], bytes(16))}, InvalidArray,
         "actions has 2 rows, agent_ids has 3"),
        ({**ACTIONS_MAP, "actions": arr_map("<f4", [3, 0], b"")}, InvalidArray,
         "actions has 0 columns, must be 1..1024"),
        (batch_map(rewards=arr_map("<f4", [2], bytes(8))), InvalidArray,
         "rewards has 2 rows, agent_ids has 3"),
        (batch_map(observations=arr_map("<f4", [3, 1025], bytes(12300))), InvalidArray,
         "observations has 1025 columns, must be 1..1024"),
        (batch_map(agent_ids=[1]), InvalidArray, "array is not a map"),
        (batch_map(agent_ids=arr_map("<f2", [3], bytes(6))), InvalidArray,
         "unsupported array dtype '<f2'"),
        (batch_map(agent_ids=arr_map(7, [3], bytes(12))), InvalidArray,
         "unsupported array dtype 7"),
        (batch_map(agent_ids=arr_map("<u8", [3], bytes(24))), InvalidArray,
         "array dtype '<u8', expected '<u4'"),
        (batch_map(agent_ids=arr_map("<u4", [3, 1], bytes(12))), InvalidArray,
         "array shape must be a list of 1 integers"),
        (batch_map(agent_ids=arr_map("<u4", [2**31], b"")), InvalidArray,
         "bad array dimension 2147483648"),
        (batch_map(agent_ids=arr_map("<u4", [1.0], bytes(4))), InvalidArray,
         "bad array dimension 1.0"),
        (batch_map(agent_ids=arr_map("<u4", [3], "abc")), InvalidArray, "array data is not bin"),
        (batch_map(agent_ids=arr_map("<u4", [3], bytes(11))), InvalidArray,
         "array of shape [3] needs 12 bytes, got 11"),
    ],
)  # fmt: skip
def test_what_is_wrong_with_a_frame_is_said_exactly(
    fields: dict[str, Any], error: type[RemoteProtocolError], message: str
) -> None:
    for batch_arrays in (True, False):
        with pytest.raises(error) as info:
            decode_payload(payload(fields), batch_arrays=batch_arrays)
        assert str(info.value) == message


def test_limits_are_inclusive() -> None:
    features = tuple(f"f{n:02d}" for n in range(32))
    hello = decode_payload(payload({**HELLO_MAP, "features": list(features)}))
    assert isinstance(hello, Hello)
    assert hello.features == features  # 32 entries: the most allowed
    names = ("f", "f" * 64)
    hello = decode_payload(payload({**HELLO_MAP, "features": list(names)}))
    assert isinstance(hello, Hello)
    assert hello.features == names  # 1 and 64 characters
    sync = decode_payload(payload({"t": int(FrameType.STATE_SYNC), "state_vector": bytes(1 << 20)}))
    assert sync == StateSyncRequest(state_vector=bytes(1 << 20))
    encode_payload(StateSyncRequest(state_vector=bytes(1 << 20)))  # the most, both ways
    empty = decode_array(arr_map("<u4", [0, 2**31 - 1], b""), dtype="<u4", ndim=2)
    assert empty.shape == (0, 2**31 - 1)
    with pytest.raises(BatchTooLarge, match=r"^5 agents in one batch, at most 4 allowed$"):
        decode_payload(encode_payload(make_batch(n=5)), max_batch_agents=4)
    decode_payload(encode_payload(make_batch(n=4)), max_batch_agents=4)


def test_optional_fields_default_to_nothing() -> None:
    welcome = decode_payload(
        payload({"t": int(FrameType.WELCOME), "version": 2, "session_id": "s", "gateway_id": "g",
                 "max_frame_bytes": 9, "max_batch_agents": 9})
    )  # fmt: skip
    assert isinstance(welcome, Welcome)
    assert (welcome.credit, welcome.resume_seq, welcome.features) == (0, 0, ())
    status = decode_payload(payload(STATUS_MAP))
    assert status == Status(gateway_id="g", uptime_s=1.0, edges=())


def test_encoding_refuses_what_cannot_travel_and_says_why() -> None:
    bad_rows = Actions(
        tick=1, agent_ids=np.arange(3, dtype=np.uint32), actions=np.ones((2, 2), np.float32)
    )
    cases: list[tuple[Any, str]] = [
        (bad_rows, "actions has 2 rows, agent_ids has 3"),
        (
            ObservationBatch(
                seq=1, tick=1, agent_ids=np.arange(3, dtype=np.uint32),
                observations=np.ones((3, 2), np.float32), rewards=np.ones(2, np.float32),
            ),
            "rewards has 2 rows, agent_ids has 3",
        ),
        (
            Actions(tick=1, agent_ids=np.arange(3, dtype=np.uint32),
                    actions=np.ones((3, 2), np.complex64)),
            "actions must be <f4, is <c8",
        ),
        (
            Actions(tick=1, agent_ids=np.arange(6, dtype=np.uint32).reshape(3, 2),
                    actions=np.ones((3, 2), np.float32)),
            "agent_ids must have 1 dimensions, has 2",
        ),
        (StateSyncRequest(state_vector=b""), "state_vector must be 1..1048576 bytes"),
        (StateSyncRequest(state_vector=bytes((1 << 20) + 1)),
         "state_vector must be 1..1048576 bytes"),
        (StateUpdate(update=b""), "update must not be empty"),
        (Ack(seq=2**64, accepted=1), "cannot encode ACK: "),
    ]  # fmt: skip
    for frame, message in cases:
        with pytest.raises(LocalProtocolError) as info:
            encode_payload(frame)
        assert str(info.value).startswith(message), (frame, str(info.value))
    with pytest.raises(LocalProtocolError, match=r"^dtype '<c8' cannot travel as an array$"):
        encode_array(np.ones(2, np.complex64))
    with pytest.raises(LocalProtocolError, match=r"^not a frame: 'text'$"):
        encode_payload("text")  # type: ignore[arg-type]


def test_prefix_limits_and_strided_arrays() -> None:
    from edgeswarm.wire.framing import MAX_PREFIX_VALUE, encode_prefix

    assert encode_prefix(0) == bytes(4)
    assert encode_prefix(MAX_PREFIX_VALUE) == b"\xff" * 4
    for length in (-1, MAX_PREFIX_VALUE + 1):
        with pytest.raises(LocalProtocolError, match=rf"^payload of {length} bytes cannot be"):
            encode_prefix(length)
    strided = np.arange(10, dtype="<u4")[::2]  # the right dtype, not contiguous
    wire = encode_array(strided)
    np.testing.assert_array_equal(
        decode_array({**wire, "data": bytes(wire["data"])}, dtype="<u4", ndim=1), strided
    )


@pytest.mark.parametrize(
    ("raw", "error", "message"),
    [
        (payload([1, 2]), MalformedFrame, "payload is a list, not a map"),
        (b"\xc1", MalformedFrame, "payload is not valid msgpack: FormatError"),
        (payload({1: 2}), MalformedFrame, "payload is not valid msgpack: ValueError"),
        (payload({"t": "4"}), MalformedFrame, "missing or non-integer frame type 't'"),
        (payload({"t": 99}), UnknownFrameType, "unknown frame type 99"),
        # the unpacker's limits refuse before any field is looked at
        (payload({"t": int(FrameType.ERROR), "code": 1, "message": "m" * ((1 << 20) + 1)}),
         MalformedFrame, "payload is not valid msgpack: ValueError"),
        (payload({**HELLO_MAP, "features": [1] * 65537}), MalformedFrame,
         "payload is not valid msgpack: ValueError"),
        (payload({"t": int(FrameType.ACK), "seq": 1, "accepted": 1,
                  **{f"k{i}": 0 for i in range(300)}}),
         MalformedFrame, "payload is not valid msgpack: ValueError"),
        (payload({"t": int(FrameType.ACK), "seq": msgpack.ExtType(1, b"x"), "accepted": 1}),
         MalformedFrame, "payload is not valid msgpack: ValueError"),
    ],
)  # fmt: skip
def test_what_is_wrong_with_a_payload_is_said_exactly(
    raw: bytes, error: type[RemoteProtocolError], message: str
) -> None:
    with pytest.raises(error) as info:
        decode_payload(raw)
    assert str(info.value) == message


def test_encoding_a_batch_names_the_array_that_cannot_travel() -> None:
    def batch(**arrays: Any) -> ObservationBatch:
        fields = {
            "agent_ids": np.arange(3, dtype=np.uint32),
            "observations": np.ones((3, 2), np.float32),
            "rewards": np.ones(3, np.float32),
        }
        return ObservationBatch(seq=1, tick=1, **{**fields, **arrays})

    cases = [
        (batch(agent_ids=np.zeros((3, 1), np.uint32)), "agent_ids must have 1 dimensions, has 2"),
        (batch(observations=np.ones((3, 2), np.complex64)), "observations must be <f4, is <c8"),
        (batch(rewards=np.ones((3, 1), np.float32)), "rewards must have 1 dimensions, has 2"),
        (
            batch(observations=np.ones((2, 2), np.float32)),
            "observations has 2 rows, agent_ids has 3",
        ),
    ]
    for frame, message in cases:
        with pytest.raises(LocalProtocolError) as info:
            encode_payload(frame)
        assert str(info.value) == message


def test_a_frame_reader_names_the_oversized_frame() -> None:
    reader = FrameReader(max_frame_bytes=10)
    reader.feed(struct.pack(">I", 11))
    with pytest.raises(FrameTooLarge) as info:
        reader.next_payload()
    assert str(info.value) == "frame of 11 bytes announced, at most 10 allowed"


def _map_of_size(size: int) -> bytes:
    """A msgpack map {"b": bin} of exactly ``size`` bytes."""
    filler = size
    payload = msgpack.packb({"b": bytes(filler)})
    while len(payload) != size:  # the bin header's length depends on the filler's
        filler -= len(payload) - size
        payload = msgpack.packb({"b": bytes(filler)})
    return bytes(payload)


def test_the_preauth_size_limit_is_inclusive_and_only_before_welcome() -> None:
    """Section 7: at most ``PREAUTH_MAX_FRAME_BYTES`` before WELCOME, not one byte more;
    after it (the default) the same payload is fine."""
    from edgeswarm.wire.unpack import PREAUTH_MAX_FRAME_BYTES, unpack_payload

    exact = _map_of_size(PREAUTH_MAX_FRAME_BYTES)
    assert len(unpack_payload(exact, preauth=True)["b"]) > 0
    over = _map_of_size(PREAUTH_MAX_FRAME_BYTES + 1)
    with pytest.raises(MalformedFrame) as refused:
        unpack_payload(over, preauth=True)
    assert str(refused.value) == (
        f"{PREAUTH_MAX_FRAME_BYTES + 1} bytes before WELCOME, at most {PREAUTH_MAX_FRAME_BYTES}"
    )
    assert unpack_payload(over) == {"b": bytes(len(over) - 6)}  # fixmap, fixstr "b", bin 16


def test_a_reader_fed_and_read_in_turns_keeps_the_partial_frame() -> None:
    """Read between feeds, with the next frame (and even its prefix) cut short: the
    unread bytes stay, the short prefix is no frame yet, nothing is lost."""
    from edgeswarm.wire.framing import PREFIX_BYTES, encode_prefix

    first, second = b"first payload", b"second"
    stream = encode_prefix(len(first)) + first + encode_prefix(len(second)) + second
    cut = len(first) + PREFIX_BYTES + 2  # two bytes into the second prefix
    reader = FrameReader()
    reader.feed(stream[:cut])
    assert reader.next_payload() == first
    assert reader.buffered == 2
    assert reader.next_payload() is None  # half a prefix is not a length
    reader.feed(stream[cut : cut + 3])
    assert reader.next_payload() is None  # the prefix, one byte of the payload
    reader.feed(stream[cut + 3 :])
    assert reader.next_payload() == second
    assert reader.buffered == 0


def test_encode_array_with_copy_owns_its_bytes() -> None:
    """``copy``: the map outlives the array (recordings), so later writes to the array
    do not reach it; without ``copy`` it is a view of the array's buffer."""
    from edgeswarm.wire.arrays import encode_array

    arr = np.arange(4, dtype="<f4")
    copied = encode_array(arr, copy=True)
    viewed = encode_array(arr)
    assert isinstance(copied["data"], bytes)
    assert isinstance(viewed["data"], memoryview)
    arr[:] = -1.0
    assert copied == {"dtype": "<f4", "shape": [4], "data": np.arange(4, dtype="<f4").tobytes()}
    assert bytes(viewed["data"]) == arr.tobytes()


def test_action_columns_are_bounded_at_both_ends() -> None:
    from edgeswarm.wire.arrays import MAX_ACTION_DIM, check_batch_shape

    assert check_batch_shape(3, {"actions": (3, 1)}) is None
    assert check_batch_shape(3, {"actions": (3, MAX_ACTION_DIM)}) is None
    for columns in (0, MAX_ACTION_DIM + 1):
        assert check_batch_shape(3, {"actions": (3, columns)}) == (
            f"actions has {columns} columns, must be 1..{MAX_ACTION_DIM}"
        )
    assert check_batch_shape(3, {"actions": (2, 1)}) == "actions has 2 rows, agent_ids has 3"


def test_wire_array_takes_any_array_like_and_gives_the_same_map() -> None:
    """A list, a subclass of ndarray or an array of another safe dtype is converted; the
    map is the one the wire layout itself gives."""
    from edgeswarm.wire.arrays import wire_array

    class Sub(np.ndarray):
        pass

    rows = [[1.0, 2.0], [3.0, 4.5]]
    expected = wire_array(np.array(rows, dtype="<f4"), "<f4", 2, "observations")
    for like in (rows, np.array(rows), np.array(rows, dtype="<f4").view(Sub)):
        got = wire_array(like, "<f4", 2, "observations")  # type: ignore[arg-type]
        assert got["dtype"] == expected["dtype"]
        assert got["shape"] == expected["shape"] == [2, 2]
        assert bytes(got["data"]) == bytes(expected["data"])


@pytest.mark.parametrize("value", [0, 1, UINT63_MAX])
def test_hello_carries_its_sequence_epoch_and_state_incarnation(value: int) -> None:
    """Both are optional (absent: None) and travel under their own names."""
    hello = Hello(
        version=2,
        public_key=b"k" * 32,
        role=Role.EDGE,
        peer_id="edge-1",
        seq_epoch=value,
        state_incarnation=value + 1 if value < UINT63_MAX else 0,
    )
    payload = encode_payload(hello)
    fields = msgpack.unpackb(payload)
    assert (fields["seq_epoch"], fields["state_incarnation"]) == (
        hello.seq_epoch,
        hello.state_incarnation,
    )
    decoded = decode_payload(payload)
    assert isinstance(decoded, Hello)
    assert (decoded.seq_epoch, decoded.state_incarnation) == (
        hello.seq_epoch,
        hello.state_incarnation,
    )
    plain = decode_payload(
        encode_payload(Hello(version=2, public_key=b"k" * 32, role=Role.EDGE, peer_id="edge-1"))
    )
    assert isinstance(plain, Hello)
    assert (plain.seq_epoch, plain.state_incarnation) == (None, None)
    for name in ("seq_epoch", "state_incarnation"):
        with pytest.raises(MalformedFrame, match=name):
            decode_payload(msgpack.packb({**fields, name: -1}))


def test_an_observation_batch_numbers_up_to_two_to_the_63_minus_one() -> None:
    top = ObservationBatch(
        seq=UINT63_MAX,
        tick=UINT63_MAX,
        agent_ids=np.arange(2, dtype=np.uint32),
        observations=np.zeros((2, 1), dtype=np.float32),
        rewards=np.zeros(2, dtype=np.float32),
    )
    decoded = decode_payload(encode_payload(top))
    assert isinstance(decoded, ObservationBatch)
    assert (decoded.seq, decoded.tick) == (UINT63_MAX, UINT63_MAX)
    for seq, tick in ((UINT63_MAX + 1, 0), (0, UINT63_MAX + 1), (-1, 0)):
        over = dataclasses.replace(top, seq=seq, tick=tick)
        with pytest.raises(
            LocalProtocolError, match=r"^OBS_BATCH seq and tick must be in 0\.\.2\*\*63-1$"
        ):
            encode_payload(over)
