"""Payload fields of the heavy inference lane (feature ``heavy``), as pure functions.

INFER_REQUEST and INFER_RESULT, the ``request_id``/``status`` keys a result
adds to ACTIONS, HELLO's ``models`` and WELCOME's ``infer_window``;
``codec.py`` calls these for the frames it encodes and decodes.
``docs/protocol.md``, section 11, is the specification.
"""

from __future__ import annotations

from typing import Any

from .arrays import array_shape, array_view, check_batch_shape, wire_array
from .errors import BatchTooLarge, InvalidArray, LocalProtocolError, MalformedFrame
from .fields import MAX_ID_CHARS, MAX_TEXT_CHARS, field, ident, text, uint
from .frames import InferRequest, InferResult, InferStatus

__all__ = [
    "MAX_DEADLINE_MS",
    "MAX_MODELS",
    "decode_infer_request",
    "decode_infer_result",
    "decode_models",
    "decode_result_keys",
    "encode_infer_request",
    "encode_infer_result",
]

MAX_DEADLINE_MS = 600_000
"""Longest ``deadline_ms`` of an INFER_REQUEST (ten minutes)."""
MAX_MODELS = 32
"""Most entries of HELLO's ``models``."""

_STATUSES = frozenset(int(s) for s in InferStatus)


def encode_infer_request(frame: InferRequest) -> dict[str, Any]:
    if not 1 <= len(frame.model) <= MAX_ID_CHARS:
        raise LocalProtocolError(f"model must be 1..{MAX_ID_CHARS} characters")
    if not 1 <= frame.deadline_ms <= MAX_DEADLINE_MS:
        raise LocalProtocolError(f"deadline_ms must be 1..{MAX_DEADLINE_MS}")
    fields = {
        "request_id": frame.request_id,
        "model": frame.model,
        "deadline_ms": frame.deadline_ms,
        "tick": frame.tick,
        "agent_ids": wire_array(frame.agent_ids, "<u4", 1, "agent_ids"),
        "inputs": wire_array(frame.inputs, "<f4", 2, "inputs"),
    }
    problem = check_batch_shape(frame.agent_ids.shape[0], {"inputs": frame.inputs.shape})
    if problem is not None:
        raise LocalProtocolError(problem)
    return fields


def encode_infer_result(frame: InferResult) -> dict[str, Any]:
    if int(frame.status) not in _STATUSES:
        raise LocalProtocolError(f"status must be one of {sorted(_STATUSES)}")
    problem = check_batch_shape(frame.outputs.shape[0], {"outputs": frame.outputs.shape})
    if problem is not None:
        raise LocalProtocolError(problem)
    return {
        "request_id": frame.request_id,
        "status": int(frame.status),
        "outputs": wire_array(frame.outputs, "<f4", 2, "outputs"),
        "message": frame.message[:MAX_TEXT_CHARS],
    }


def _status(m: dict[Any, Any]) -> int:
    status = uint(m, "status")
    if status not in _STATUSES:
        raise MalformedFrame(f"field 'status' must be one of {sorted(_STATUSES)}, got {status}")
    return status


def _rows(m: dict[Any, Any], key: str, max_rows: int) -> list[int]:
    shape = array_shape(field(m, key), dtype="<f4", ndim=2)
    if shape[0] > max_rows:
        raise BatchTooLarge(f"{shape[0]} rows in one frame, at most {max_rows} allowed")
    return shape


def decode_infer_request(m: dict[Any, Any], max_batch_agents: int) -> InferRequest:
    deadline_ms = uint(m, "deadline_ms")
    if not 1 <= deadline_ms <= MAX_DEADLINE_MS:
        raise MalformedFrame(f"field 'deadline_ms' must be 1..{MAX_DEADLINE_MS}")
    request_id, model, tick = uint(m, "request_id"), ident(m, "model"), uint(m, "tick")
    n = array_shape(field(m, "agent_ids"), dtype="<u4", ndim=1)[0]
    shape = _rows(m, "inputs", max_batch_agents)
    problem = check_batch_shape(n, {"inputs": shape})
    if problem is not None:
        raise InvalidArray(problem)
    return InferRequest(
        request_id=request_id,
        model=model,
        deadline_ms=deadline_ms,
        tick=tick,
        agent_ids=array_view(m["agent_ids"], "<u4"),
        inputs=array_view(m["inputs"], "<f4"),
    )


def decode_infer_result(m: dict[Any, Any], max_batch_agents: int) -> InferResult:
    request_id, status = uint(m, "request_id"), _status(m)
    shape = _rows(m, "outputs", max_batch_agents)
    problem = check_batch_shape(shape[0], {"outputs": shape})
    if problem is not None:
        raise InvalidArray(problem)
    message = text(m, "message", 0, MAX_TEXT_CHARS) if m.get("message") is not None else ""
    return InferResult(
        request_id=request_id,
        status=status,
        outputs=array_view(m["outputs"], "<f4"),
        message=message,
    )


def decode_result_keys(m: dict[Any, Any]) -> tuple[int | None, int]:
    """ACTIONS' optional ``request_id`` and ``status`` (a heavy-lane result when present)."""
    if m.get("request_id") is None:
        return None, 0
    return uint(m, "request_id"), _status(m) if "status" in m else 0


def decode_models(m: dict[Any, Any]) -> tuple[str, ...]:
    """HELLO's optional ``models``: at most MAX_MODELS names of 1..MAX_ID_CHARS characters."""
    value = m.get("models")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_MODELS:
        raise MalformedFrame(f"field 'models' must be an array of at most {MAX_MODELS}")
    for name in value:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_ID_CHARS:
            raise MalformedFrame(
                f"every entry of 'models' must be a string of 1..{MAX_ID_CHARS} characters"
            )
    return tuple(value)
