"""Payload fields of placement administration (feature ``placement``), as pure functions.

PLACEMENT_REQUEST carries ``request_id``, ``op`` and ``args``; PLACEMENT
carries ``request_id``, ``ok``, ``result`` and ``message``. ``args`` and
``result`` are maps with string keys; the unpacker's limits (docs/protocol.md
section 7) already bound their size and depth. ``codec.py`` calls these.
``docs/protocol.md``, section 13, is the specification.
"""

from __future__ import annotations

from typing import Any

from .errors import LocalProtocolError, MalformedFrame
from .fields import MAX_TEXT_CHARS, boolean, field, text, uint63
from .frames import PlacementReply, PlacementRequest

__all__ = [
    "MAX_OP_CHARS",
    "decode_placement",
    "decode_placement_request",
    "encode_placement",
    "encode_placement_request",
]

MAX_OP_CHARS = 64
"""Longest ``op`` name."""


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
