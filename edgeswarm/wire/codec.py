"""Payloads <-> frames of the protocol (``PROTOCOL_VERSION``), as pure functions.

A payload is a msgpack map whose ``t`` key is the ``FrameType`` and whose
other keys are the field names of the frame's dataclass; on the stream it
follows a length prefix (``framing.py``); arrays travel as ``arrays.py``
says. ``docs/protocol.md`` is the specification; this module is its
reference implementation.

Decoding never raises anything but a ``RemoteProtocolError`` subclass, and
checks every limit before it allocates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, overload

import msgpack  # type: ignore[import-untyped]
from numpy.typing import NDArray

from . import module_codec, placement_codec, registry_codec, status_codec
from .arrays import array_shape, array_view, check_batch_shape, decode_array, wire_array
from .errors import (
    BatchTooLarge,
    InvalidArray,
    LocalProtocolError,
    MalformedFrame,
    RemoteProtocolError,
    UnknownFrameType,
)
from .fields import (
    MAX_FEATURE_CHARS,
    MAX_FEATURES,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    UINT63_MAX,
    UINT64_MAX,
    blob,
    features,
    field,
    fixed_bin,
    ident,
    text,
    uint,
    uint63,
)
from .frames import (
    FRAME_TYPES,
    NONCE_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    Ack,
    Actions,
    Assign,
    Auth,
    BatchHeader,
    BlobChunk,
    BlobRequest,
    Bye,
    Challenge,
    Checkpoint,
    Error,
    Frame,
    FrameType,
    Hello,
    InferRequest,
    InferResult,
    ModuleAssign,
    ModuleReport,
    ObservationBatch,
    PlacementReply,
    PlacementRequest,
    Redirect,
    RegistryChunk,
    RegistryIndex,
    RegistryRequest,
    Role,
    StateSyncRequest,
    StateUpdate,
    Status,
    StatusRequest,
    Welcome,
)
from .framing import MAX_PREFIX_VALUE, encode_prefix
from .infer_codec import (
    decode_infer_request,
    decode_infer_result,
    decode_models,
    decode_result_keys,
    encode_infer_request,
    encode_infer_result,
)
from .unpack import PREAUTH_MAX_FRAME_BYTES, unpack_payload

__all__ = [
    "DEFAULT_MAX_BATCH_AGENTS",
    "MAX_FEATURES",
    "MAX_FEATURE_CHARS",
    "MAX_ID_CHARS",
    "MAX_STATE_VECTOR_BYTES",
    "MAX_TEXT_CHARS",
    "PREAUTH_MAX_FRAME_BYTES",
    "UINT63_MAX",
    "UINT64_MAX",
    "decode_payload",
    "encode_frame",
    "encode_payload",
    "unpack_payload",
]

DEFAULT_MAX_BATCH_AGENTS = 65536
"""Default largest number of agents in one OBS_BATCH or ACTIONS frame."""
MAX_STATE_VECTOR_BYTES = 1024 * 1024
"""Longest STATE_SYNC ``state_vector``, in bytes."""

# --- encoding --------------------------------------------------------------


def _encode_fields(frame: Frame) -> dict[str, Any]:
    match frame:
        case Hello():
            fields: dict[str, Any] = {
                "version": frame.version,
                "role": Role(frame.role).value,
                "peer_id": frame.peer_id,
                "public_key": bytes(frame.public_key),
                "agents": frame.agents,
            }
            if frame.join_token is not None:
                fields["join_token"] = frame.join_token
            if frame.features:
                fields["features"] = list(frame.features)
            if frame.models:
                fields["models"] = list(frame.models)
            if frame.seq_epoch is not None:
                fields["seq_epoch"] = frame.seq_epoch
            if frame.state_incarnation is not None:
                fields["state_incarnation"] = frame.state_incarnation
            return fields
        case Challenge():
            return {"nonce": bytes(frame.nonce), "gateway_id": frame.gateway_id}
        case Auth():
            return {"signature": bytes(frame.signature)}
        case Welcome():
            fields = {
                "version": frame.version,
                "session_id": frame.session_id,
                "gateway_id": frame.gateway_id,
                "max_frame_bytes": frame.max_frame_bytes,
                "max_batch_agents": frame.max_batch_agents,
                "credit": frame.credit,
                "resume_seq": frame.resume_seq,
            }
            if frame.features:
                fields["features"] = list(frame.features)
            for optional in ("infer_window", "lease_ms", "lease_ticks"):  # absent when 0
                if getattr(frame, optional):
                    fields[optional] = getattr(frame, optional)
            return fields
        case ObservationBatch():
            if not (0 <= frame.seq <= UINT63_MAX and 0 <= frame.tick <= UINT63_MAX):
                raise LocalProtocolError("OBS_BATCH seq and tick must be in 0..2**63-1")
            fields = {
                "seq": frame.seq,
                "tick": frame.tick,
                "agent_ids": wire_array(frame.agent_ids, "<u4", 1, "agent_ids"),
                "observations": wire_array(frame.observations, "<f4", 2, "observations"),
                "rewards": wire_array(frame.rewards, "<f4", 1, "rewards"),
            }
            problem = check_batch_shape(
                frame.agent_ids.shape[0],
                {"observations": frame.observations.shape, "rewards": frame.rewards.shape},
            )
            if problem is not None:
                raise LocalProtocolError(problem)
            return fields
        case Ack():
            return {"seq": frame.seq, "accepted": frame.accepted, "credit": frame.credit}
        case Actions():
            fields = {
                "tick": frame.tick,
                "agent_ids": wire_array(frame.agent_ids, "<u4", 1, "agent_ids"),
                "actions": wire_array(frame.actions, "<f4", 2, "actions"),
            }
            problem = check_batch_shape(frame.agent_ids.shape[0], {"actions": frame.actions.shape})
            if problem is not None:
                raise LocalProtocolError(problem)
            if frame.request_id is not None:
                fields["request_id"] = frame.request_id
                fields["status"] = int(frame.status)
            return fields
        case StatusRequest():
            return {}
        case Status():
            return status_codec.encode_status(frame)
        case Error():
            fields = {"code": int(frame.code), "message": frame.message}
            if frame.seq is not None:
                fields["seq"] = frame.seq
            return fields
        case Bye():
            return {"code": int(frame.code), "reason": frame.reason}
        case StateSyncRequest():
            if not 1 <= len(frame.state_vector) <= MAX_STATE_VECTOR_BYTES:
                raise LocalProtocolError(f"state_vector must be 1..{MAX_STATE_VECTOR_BYTES} bytes")
            return {"state_vector": bytes(frame.state_vector)}
        case StateUpdate():
            if not frame.update:
                raise LocalProtocolError("update must not be empty")
            return {"update": bytes(frame.update)}
        case InferRequest():
            return encode_infer_request(frame)
        case InferResult():
            return encode_infer_result(frame)
        case PlacementRequest():
            return placement_codec.encode_placement_request(frame)
        case PlacementReply():
            return placement_codec.encode_placement(frame)
        case Assign():
            return placement_codec.encode_assign(frame)
        case Checkpoint():
            return placement_codec.encode_checkpoint(frame)
        case Redirect():
            return placement_codec.encode_redirect(frame)
        case ModuleAssign():
            return module_codec.encode_module_assign(frame)
        case ModuleReport():
            return module_codec.encode_module_report(frame)
        case BlobRequest():
            return module_codec.encode_blob_request(frame)
        case BlobChunk():
            return module_codec.encode_blob_chunk(frame)
        case RegistryIndex():
            return registry_codec.encode_registry_index(frame)
        case RegistryRequest():
            return registry_codec.encode_registry_request(frame)
        case RegistryChunk():
            return registry_codec.encode_registry_chunk(frame)
    raise LocalProtocolError(f"not a frame: {frame!r}")  # pragma: no cover


def encode_payload(frame: Frame) -> bytes:
    """The msgpack payload of ``frame`` (no length prefix)."""
    frame_type = FRAME_TYPES.get(type(frame))
    if frame_type is None:
        raise LocalProtocolError(f"not a frame: {frame!r}")
    body: dict[str, Any] = {"t": int(frame_type)}
    body.update(_encode_fields(frame))
    try:
        return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {frame_type.name}: {exc}") from exc


def encode_frame(frame: Frame) -> bytes:
    """The bytes of ``frame`` on the wire: length prefix, then payload."""
    payload = encode_payload(frame)
    return encode_prefix(len(payload)) + payload


# --- decoding --------------------------------------------------------------


def _array(m: dict[Any, Any], key: str, dtype: str, ndim: int) -> NDArray[Any]:
    return decode_array(field(m, key), dtype=dtype, ndim=ndim)


def _n_agents(n: int, max_batch_agents: int) -> int:
    if n > max_batch_agents:
        raise BatchTooLarge(f"{n} agents in one batch, at most {max_batch_agents} allowed")
    return n


_ROLES = tuple(role.value for role in Role)


def _decode_hello(m: dict[Any, Any], max_batch_agents: int) -> Hello:
    role = field(m, "role")
    if role not in _ROLES:
        raise MalformedFrame(f"field 'role' must be one of {', '.join(_ROLES)}, got {role!r}")
    token = m.get("join_token")
    seq_epoch = m.get("seq_epoch")
    state_incarnation = m.get("state_incarnation")
    return Hello(
        version=uint(m, "version"),
        role=Role(role),
        peer_id=ident(m, "peer_id"),
        public_key=fixed_bin(m, "public_key", PUBLIC_KEY_BYTES),
        agents=uint(m, "agents") if "agents" in m else 0,
        join_token=None if token is None else text(m, "join_token", 1, MAX_TEXT_CHARS),
        features=features(m),
        models=decode_models(m),
        seq_epoch=None if seq_epoch is None else uint63(m, "seq_epoch"),
        state_incarnation=None if state_incarnation is None else uint63(m, "state_incarnation"),
    )


def _decode_challenge(m: dict[Any, Any], max_batch_agents: int) -> Challenge:
    return Challenge(nonce=fixed_bin(m, "nonce", NONCE_BYTES), gateway_id=ident(m, "gateway_id"))


def _decode_auth(m: dict[Any, Any], max_batch_agents: int) -> Auth:
    return Auth(signature=fixed_bin(m, "signature", SIGNATURE_BYTES))


def _decode_welcome(m: dict[Any, Any], max_batch_agents: int) -> Welcome:
    return Welcome(
        version=uint(m, "version"),
        session_id=ident(m, "session_id"),
        gateway_id=ident(m, "gateway_id"),
        max_frame_bytes=uint(m, "max_frame_bytes"),
        max_batch_agents=uint(m, "max_batch_agents"),
        credit=uint(m, "credit") if "credit" in m else 0,
        resume_seq=uint(m, "resume_seq") if "resume_seq" in m else 0,
        features=features(m),
        infer_window=uint(m, "infer_window") if "infer_window" in m else 0,
        lease_ms=uint(m, "lease_ms") if "lease_ms" in m else 0,
        lease_ticks=uint(m, "lease_ticks") if "lease_ticks" in m else 0,
    )


def _obs_batch_header(m: dict[Any, Any], max_batch_agents: int) -> BatchHeader:
    """Every check of an OBS_BATCH map; its arrays are not built."""
    seq = uint63(m, "seq")
    try:
        tick = uint63(m, "tick")
        agent_ids = field(m, "agent_ids")
        n = _n_agents(array_shape(agent_ids, dtype="<u4", ndim=1)[0], max_batch_agents)
        observations = array_shape(field(m, "observations"), dtype="<f4", ndim=2)
        rewards = array_shape(field(m, "rewards"), dtype="<f4", ndim=1)
        problem = check_batch_shape(n, {"observations": observations, "rewards": rewards})
        if problem is not None:
            raise InvalidArray(problem)
    except RemoteProtocolError as exc:
        exc.seq = seq
        raise
    return BatchHeader(seq=seq, tick=tick, count=n, agent_ids=array_view(agent_ids, "<u4"))


def _decode_obs_batch(m: dict[Any, Any], max_batch_agents: int) -> ObservationBatch:
    header = _obs_batch_header(m, max_batch_agents)
    return ObservationBatch(
        seq=header.seq,
        tick=header.tick,
        agent_ids=array_view(m["agent_ids"], "<u4"),
        observations=array_view(m["observations"], "<f4"),
        rewards=array_view(m["rewards"], "<f4"),
    )


def _decode_ack(m: dict[Any, Any], max_batch_agents: int) -> Ack:
    credit = uint(m, "credit") if "credit" in m else 0
    return Ack(seq=uint(m, "seq"), accepted=uint(m, "accepted"), credit=credit)


def _decode_actions(m: dict[Any, Any], max_batch_agents: int) -> Actions:
    tick = uint(m, "tick")
    agent_ids = _array(m, "agent_ids", "<u4", 1)
    n = _n_agents(int(agent_ids.shape[0]), max_batch_agents)
    actions = _array(m, "actions", "<f4", 2)
    problem = check_batch_shape(n, {"actions": actions.shape})
    if problem is not None:
        raise InvalidArray(problem)
    request_id, status = decode_result_keys(m)
    return Actions(
        tick=tick, agent_ids=agent_ids, actions=actions, request_id=request_id, status=status
    )


def _decode_status_request(m: dict[Any, Any], max_batch_agents: int) -> StatusRequest:
    return StatusRequest()


def _decode_error(m: dict[Any, Any], max_batch_agents: int) -> Error:
    seq = uint(m, "seq") if m.get("seq") is not None else None
    return Error(code=uint(m, "code"), message=text(m, "message", 0, MAX_TEXT_CHARS), seq=seq)


def _decode_bye(m: dict[Any, Any], max_batch_agents: int) -> Bye:
    reason = text(m, "reason", 0, MAX_TEXT_CHARS) if "reason" in m else ""
    return Bye(code=uint(m, "code"), reason=reason)


def _decode_state_sync(m: dict[Any, Any], max_batch_agents: int) -> StateSyncRequest:
    return StateSyncRequest(state_vector=blob(m, "state_vector", MAX_STATE_VECTOR_BYTES))


def _decode_state_update(m: dict[Any, Any], max_batch_agents: int) -> StateUpdate:
    return StateUpdate(update=blob(m, "update", MAX_PREFIX_VALUE))


_DECODERS: dict[FrameType, Callable[[dict[Any, Any], int], Frame]] = {
    FrameType.HELLO: _decode_hello,
    FrameType.CHALLENGE: _decode_challenge,
    FrameType.AUTH: _decode_auth,
    FrameType.WELCOME: _decode_welcome,
    FrameType.OBS_BATCH: _decode_obs_batch,
    FrameType.ACK: _decode_ack,
    FrameType.ACTIONS: _decode_actions,
    FrameType.STATUS_REQUEST: _decode_status_request,
    FrameType.STATUS: status_codec.decode_status,
    FrameType.ERROR: _decode_error,
    FrameType.BYE: _decode_bye,
    FrameType.STATE_SYNC: _decode_state_sync,
    FrameType.STATE_UPDATE: _decode_state_update,
    FrameType.INFER_REQUEST: decode_infer_request,
    FrameType.INFER_RESULT: decode_infer_result,
    FrameType.PLACEMENT_REQUEST: placement_codec.decode_placement_request,
    FrameType.PLACEMENT: placement_codec.decode_placement,
    FrameType.MODULE_ASSIGN: module_codec.decode_module_assign,
    FrameType.MODULE_REPORT: module_codec.decode_module_report,
    FrameType.BLOB_REQUEST: module_codec.decode_blob_request,
    FrameType.BLOB_CHUNK: module_codec.decode_blob_chunk,
    FrameType.ASSIGN: placement_codec.decode_assign,
    FrameType.CHECKPOINT: placement_codec.decode_checkpoint,
    FrameType.REDIRECT: placement_codec.decode_redirect,
    FrameType.REGISTRY_INDEX: registry_codec.decode_registry_index,
    FrameType.REGISTRY_REQUEST: registry_codec.decode_registry_request,
    FrameType.REGISTRY_CHUNK: registry_codec.decode_registry_chunk,
}


@overload
def decode_payload(
    payload: bytes | memoryview,
    *,
    max_batch_agents: int = ...,
    batch_arrays: Literal[True] = ...,
    preauth: bool = ...,
) -> Frame: ...


@overload
def decode_payload(
    payload: bytes | memoryview,
    *,
    max_batch_agents: int = ...,
    batch_arrays: bool,
    preauth: bool = ...,
) -> Frame | BatchHeader: ...


def decode_payload(
    payload: bytes | memoryview,
    *,
    max_batch_agents: int = DEFAULT_MAX_BATCH_AGENTS,
    batch_arrays: bool = True,
    preauth: bool = False,
) -> Frame | BatchHeader:
    """The frame in ``payload``. Raises only ``RemoteProtocolError`` subclasses.

    ``batch_arrays=False``: an OBS_BATCH comes back as its :class:`BatchHeader`,
    checked exactly as the full decode checks it, its arrays not built (for a
    receiver that stores the payload and never reads the arrays: ~3x cheaper).
    ``preauth``: the payload arrived before WELCOME; it is unpacked with the
    handshake's limits (:data:`PREAUTH_MAX_FRAME_BYTES`, few map keys and list entries).
    """
    m = unpack_payload(payload, preauth=preauth)
    t = m.get("t")
    if type(t) is not int:
        raise MalformedFrame("missing or non-integer frame type 't'")
    try:
        frame_type = FrameType(t)
    except ValueError:
        raise UnknownFrameType(f"unknown frame type {t}") from None
    if not batch_arrays and frame_type is FrameType.OBS_BATCH:
        return _obs_batch_header(m, max_batch_agents)
    return _DECODERS[frame_type](m, max_batch_agents)
