"""MQTT payloads of observations and actions (sans-I/O).

Observations (docs/io.md, "Payloads"):

- ``PREFIX/obs/<agent_id>``: one agent, JSON or msgpack (told apart by the first
  byte: ``{`` / ``[`` / whitespace is JSON). Either a list of ``obs_dim`` numbers,
  or a map ``{"obs": [...], "reward": r}`` (``reward`` optional, default 0).
- ``PREFIX/obs/batch``: many agents, msgpack map ``{"agent_ids": <u4 (n,),
  "observations": <f4 (n, obs_dim), "rewards": <f4 (n,) optional}`` with the
  wire's array maps (``edgeswarm.wire.arrays``: dtype, shape, raw bytes).

Actions: ``PREFIX/act/<agent_id>`` with ``{"tick": t, "act": [...]}`` (JSON or
msgpack, ``format=``), or one ``PREFIX/act/batch`` per tick: msgpack
``{"tick": t, "agent_ids": <u4 (n,), "actions": <f4 (n, act_dim)}``.

Every decoding failure is a :class:`MalformedPayloadError` with a short ``reason``
(the label of ``edgeswarm_edge_io_malformed_messages``).
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgpack  # type: ignore[import-untyped]
import numpy as np
from numpy.typing import NDArray

from edgeswarm.wire.arrays import decode_array, encode_array
from edgeswarm.wire.errors import InvalidArray

from .base import IoError

__all__ = [
    "MalformedPayloadError",
    "decode_agent_observation",
    "decode_batch",
    "encode_action",
    "encode_action_batch",
    "encode_observation_batch",
]

_JSON_START = frozenset(b"{[ \t\r\n")
MAX_PAYLOAD_BYTES = 64 << 20


class MalformedPayloadError(IoError, ValueError):
    """A message that is not a valid observation; ``reason`` names the class of problem."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _load(payload: bytes) -> Any:
    if not payload:
        raise MalformedPayloadError("decode", "empty payload")
    try:
        if payload[0] in _JSON_START:
            return json.loads(payload)
        return msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedPayloadError("decode", f"{type(exc).__name__}: {exc}") from exc


def decode_agent_observation(payload: bytes, obs_dim: int) -> tuple[NDArray[np.float32], float]:
    """The observation row and reward of a per-agent message."""
    value = _load(payload)
    reward: Any = 0.0
    if isinstance(value, dict):
        reward = value.get("reward", 0.0)
        value = value.get("obs")
    if not isinstance(value, list) or len(value) != obs_dim:
        raise MalformedPayloadError("shape", f"observation must be a list of {obs_dim} numbers")
    if not all(type(x) in (int, float) for x in value) or type(reward) not in (int, float):
        raise MalformedPayloadError("value", "observation and reward must be numbers")
    row = np.array(value, dtype=np.float32)
    if not np.isfinite(row).all() or not math.isfinite(reward):
        raise MalformedPayloadError("value", "observation and reward must be finite")
    return row, float(reward)


def decode_batch(
    payload: bytes, obs_dim: int
) -> tuple[NDArray[np.uint32], NDArray[np.float32], NDArray[np.float32] | None]:
    """``(agent_ids, observations, rewards or None)`` of a batch message."""
    try:
        value = msgpack.unpackb(payload, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise MalformedPayloadError("decode", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(value, dict):
        raise MalformedPayloadError("decode", "batch must be a msgpack map")
    try:
        ids = decode_array(value.get("agent_ids"), dtype="<u4", ndim=1)
        obs = decode_array(value.get("observations"), dtype="<f4", ndim=2)
        rewards = (
            None
            if value.get("rewards") is None
            else decode_array(value["rewards"], dtype="<f4", ndim=1)
        )
    except InvalidArray as exc:
        raise MalformedPayloadError("shape", str(exc)) from exc
    n = ids.shape[0]
    if obs.shape != (n, obs_dim) or (rewards is not None and rewards.shape != (n,)):
        raise MalformedPayloadError("shape", f"{n} agents need observations ({n}, {obs_dim})")
    if not np.isfinite(obs).all() or (rewards is not None and not np.isfinite(rewards).all()):
        raise MalformedPayloadError("value", "batch observations and rewards must be finite")
    return ids, obs, rewards


def encode_action(tick: int, action: NDArray[np.float32], *, as_json: bool) -> bytes:
    """The payload of one agent's action."""
    record = {"tick": tick, "act": action.tolist()}
    if as_json:
        return json.dumps(record, separators=(",", ":")).encode()
    return msgpack.packb(record)  # type: ignore[no-any-return]


def encode_action_batch(
    tick: int, agent_ids: NDArray[np.uint32], actions: NDArray[np.float32]
) -> bytes:
    """The payload of one tick's actions for many agents."""
    return msgpack.packb(  # type: ignore[no-any-return]
        {"tick": tick, "agent_ids": encode_array(agent_ids), "actions": encode_array(actions)}
    )


def encode_observation_batch(
    agent_ids: NDArray[np.uint32],
    observations: NDArray[np.float32],
    rewards: NDArray[np.float32] | None = None,
) -> bytes:
    """A ``PREFIX/obs/batch`` payload (what a sensor gateway publishes)."""
    record: dict[str, Any] = {
        "agent_ids": encode_array(agent_ids),
        "observations": encode_array(observations),
    }
    if rewards is not None:
        record["rewards"] = encode_array(rewards)
    return msgpack.packb(record)  # type: ignore[no-any-return]
