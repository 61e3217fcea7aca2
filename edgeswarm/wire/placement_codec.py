"""Payload fields of placement administration (feature ``placement``), as pure functions.

PLACEMENT_REQUEST carries ``request_id``, ``op`` and ``args``; PLACEMENT
carries ``request_id``, ``ok``, ``result`` and ``message``. ASSIGN and
CHECKPOINT carry agent rows as arrays (``placement_frames.py``), at most the
receiver's ``max_batch_agents`` rows each, like an OBS_BATCH. ``args`` and
``result`` are maps with string keys; the unpacker's limits (docs/protocol.md
section 7) already bound their size and depth. ``codec.py`` calls these.
``docs/protocol.md``, section 13, is the specification.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .arrays import check_batch_shape, decode_array, wire_array
from .errors import BatchTooLarge, InvalidArray, LocalProtocolError, MalformedFrame
from .fields import MAX_TEXT_CHARS, boolean, field, text, uint63
from .frames import PlacementReply, PlacementRequest
from .placement_frames import Assign, Checkpoint, Redirect

__all__ = [
    "MAX_OP_CHARS",
    "MAX_POLICY_NAMES",
    "decode_assign",
    "decode_checkpoint",
    "decode_placement",
    "decode_placement_request",
    "decode_redirect",
    "encode_assign",
    "encode_checkpoint",
    "encode_placement",
    "encode_placement_request",
    "encode_redirect",
]

MAX_OP_CHARS = 64
"""Longest ``op`` name."""
MAX_POLICY_NAMES = 256
"""Most ``policy_names`` of one ASSIGN."""
MAX_POLICY_NAME_CHARS = 128
MAX_GATEWAY_ID_CHARS = 64
"""Longest gateway id in a REDIRECT."""
MAX_HOST_CHARS = 253
"""Longest host in a REDIRECT (a DNS name's limit)."""


def _string_map(m: dict[Any, Any], key: str) -> dict[str, Any]:
    value = field(m, key)
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise MalformedFrame(f"field {key!r} must be a map with string keys")
    return value


def encode_placement_request(frame: PlacementRequest) -> dict[str, Any]:
    if not 1 <= len(frame.op) <= MAX_OP_CHARS:
        raise LocalProtocolError(f"op must be 1..{MAX_OP_CHARS} characters")
    return {"request_id": frame.request_id, "op": frame.op, "args": dict(frame.args)}


def encode_placement(frame: PlacementReply) -> dict[str, Any]:
    if len(frame.message) > MAX_TEXT_CHARS:
        raise LocalProtocolError(f"message must be at most {MAX_TEXT_CHARS} characters")
    return {
        "request_id": frame.request_id,
        "ok": frame.ok,
        "result": dict(frame.result),
        "message": frame.message,
    }


def decode_placement_request(m: dict[Any, Any], max_batch_agents: int) -> PlacementRequest:
    return PlacementRequest(
        request_id=uint63(m, "request_id"),
        op=text(m, "op", 1, MAX_OP_CHARS),
        args=_string_map(m, "args"),
    )


def decode_placement(m: dict[Any, Any], max_batch_agents: int) -> PlacementReply:
    return PlacementReply(
        request_id=uint63(m, "request_id"),
        ok=boolean(m, "ok"),
        result=_string_map(m, "result"),
        message=text(m, "message", 0, MAX_TEXT_CHARS),
    )


def _rows_problem(n: int, shapes: dict[str, tuple[int, ...]]) -> str | None:
    return check_batch_shape(n, shapes)


def encode_assign(frame: Assign) -> dict[str, Any]:
    if not 0 <= frame.part < frame.parts:
        raise LocalProtocolError(f"part {frame.part} of {frame.parts} parts")
    names = frame.policy_names
    if len(names) > MAX_POLICY_NAMES or not all(
        1 <= len(name) <= MAX_POLICY_NAME_CHARS for name in names
    ):
        raise LocalProtocolError(
            f"at most {MAX_POLICY_NAMES} policy names of 1..{MAX_POLICY_NAME_CHARS} characters"
        )
    problem = _rows_problem(
        frame.count,
        {"policy": frame.policy.shape, "ticks": frame.ticks.shape, "state": frame.state.shape},
    )
    if problem is not None:
        raise LocalProtocolError(problem)
    if frame.count and int(frame.policy.max()) >= len(names):
        raise LocalProtocolError("policy indexes past policy_names")
    return {
        "epoch": frame.epoch,
        "part": frame.part,
        "parts": frame.parts,
        "agent_ids": wire_array(frame.agent_ids, "<u4", 1, "agent_ids"),
        "policy": wire_array(frame.policy, "<u2", 1, "policy"),
        "ticks": wire_array(frame.ticks, "<u8", 1, "ticks"),
        "state": wire_array(frame.state, "<f4", 2, "state"),
        "policy_names": list(names),
    }


def encode_checkpoint(frame: Checkpoint) -> dict[str, Any]:
    problem = _rows_problem(frame.count, {"ticks": frame.ticks.shape, "state": frame.state.shape})
    if problem is not None:
        raise LocalProtocolError(problem)
    return {
        "epoch": frame.epoch,
        "tick": frame.tick,
        "agent_ids": wire_array(frame.agent_ids, "<u4", 1, "agent_ids"),
        "ticks": wire_array(frame.ticks, "<u8", 1, "ticks"),
        "state": wire_array(frame.state, "<f4", 2, "state"),
    }


def _agent_ids(m: dict[Any, Any], max_batch_agents: int) -> Any:
    ids = decode_array(field(m, "agent_ids"), dtype="<u4", ndim=1)
    if ids.shape[0] > max_batch_agents:
        raise BatchTooLarge(f"{ids.shape[0]} agents in one frame, at most {max_batch_agents}")
    return ids


def _rows(m: dict[Any, Any], n: int, *names: str) -> dict[str, Any]:
    kinds = {"policy": ("<u2", 1), "ticks": ("<u8", 1), "state": ("<f4", 2)}
    arrays = {
        name: decode_array(field(m, name), dtype=kinds[name][0], ndim=kinds[name][1])
        for name in names
    }
    problem = _rows_problem(n, {name: a.shape for name, a in arrays.items()})
    if problem is not None:
        raise InvalidArray(problem)
    return arrays


def decode_assign(m: dict[Any, Any], max_batch_agents: int) -> Assign:
    epoch, part, parts = uint63(m, "epoch"), uint63(m, "part"), uint63(m, "parts")
    if part >= parts:
        raise MalformedFrame(f"part {part} of {parts} parts")
    ids = _agent_ids(m, max_batch_agents)
    if ids.shape[0] > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        raise InvalidArray("agent_ids must be ascending without repeats")
    names = field(m, "policy_names")
    if (
        not isinstance(names, list)
        or len(names) > MAX_POLICY_NAMES
        or not all(isinstance(n, str) and 1 <= len(n) <= MAX_POLICY_NAME_CHARS for n in names)
    ):
        raise MalformedFrame(
            f"policy_names must be at most {MAX_POLICY_NAMES} strings of"
            f" 1..{MAX_POLICY_NAME_CHARS} characters"
        )
    rows = _rows(m, int(ids.shape[0]), "policy", "ticks", "state")
    if ids.shape[0] and int(rows["policy"].max()) >= len(names):
        raise InvalidArray("policy indexes past policy_names")
    return Assign(
        epoch=epoch,
        part=part,
        parts=parts,
        agent_ids=ids,
        policy=rows["policy"],
        ticks=rows["ticks"],
        state=rows["state"],
        policy_names=tuple(names),
    )


def decode_checkpoint(m: dict[Any, Any], max_batch_agents: int) -> Checkpoint:
    epoch, tick = uint63(m, "epoch"), uint63(m, "tick")
    ids = _agent_ids(m, max_batch_agents)
    ascending = bool((ids[1:] > ids[:-1]).all())  # as edges send them: no sort needed
    if not ascending and np.unique(ids).shape[0] != ids.shape[0]:
        raise InvalidArray("agent_ids must not repeat")
    rows = _rows(m, int(ids.shape[0]), "ticks", "state")
    return Checkpoint(
        epoch=epoch, tick=tick, agent_ids=ids, ticks=rows["ticks"], state=rows["state"]
    )


def encode_redirect(frame: Redirect) -> dict[str, Any]:
    if not 1 <= len(frame.gateway_id) <= MAX_GATEWAY_ID_CHARS:
        raise LocalProtocolError(f"gateway_id must be 1..{MAX_GATEWAY_ID_CHARS} characters")
    if not 1 <= len(frame.host) <= MAX_HOST_CHARS:
        raise LocalProtocolError(f"host must be 1..{MAX_HOST_CHARS} characters")
    if not 1 <= frame.port <= 65535:
        raise LocalProtocolError("port must be 1..65535")
    if len(frame.reason) > MAX_TEXT_CHARS:
        raise LocalProtocolError(f"reason must be at most {MAX_TEXT_CHARS} characters")
    return {
        "gateway_id": frame.gateway_id,
        "host": frame.host,
        "port": frame.port,
        "reason": frame.reason,
    }


def decode_redirect(m: dict[Any, Any], _max_batch_agents: int) -> Redirect:
    port = uint63(m, "port")
    if not 1 <= port <= 65535:
        raise MalformedFrame(f"field 'port' must be 1..65535, not {port}")
    return Redirect(
        gateway_id=text(m, "gateway_id", 1, MAX_GATEWAY_ID_CHARS),
        host=text(m, "host", 1, MAX_HOST_CHARS),
        port=port,
        reason=text(m, "reason", 0, MAX_TEXT_CHARS),
    )
