"""NumPy references for the C agent policies in ``edgeswarm/agents_wasm/src``.

Each function performs the same float32 operations in the same order as its Wasm
module, so the two agree bit for bit (the guest tests compare them exactly):

- ``flocking.c`` (and ``boids.wat``): :func:`edgeswarm.edge.policy.boids.boids_numpy`,
  re-exported here as :func:`flocking_numpy`;
- ``mlp_controller.c``: :func:`mlp_controller_numpy`, with the configuration blob of
  :func:`mlp_config_blob`;
- ``anomaly.c``: :func:`anomaly_numpy`, given the scores the host's ``anomaly``
  model returned for the batch.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from edgeswarm.edge.policy.boids import boids_numpy

__all__ = [
    "ANOMALY_ACT_DIM",
    "ANOMALY_GAIN",
    "ANOMALY_KEEP",
    "ANOMALY_OBS_DIM",
    "ANOMALY_STATE_DIM",
    "ANOMALY_THRESHOLD",
    "MLP_ACT_DIM",
    "MLP_CONFIG_BYTES",
    "MLP_HIDDEN",
    "MLP_OBS_DIM",
    "MlpWeights",
    "anomaly_numpy",
    "flocking_numpy",
    "mlp_config_blob",
    "mlp_controller_numpy",
    "mlp_weights_from_blob",
]

flocking_numpy = boids_numpy
"""``flocking.c`` is ``boids_numpy`` operation for operation."""

MLP_OBS_DIM: Final = 8
MLP_HIDDEN: Final = 16
MLP_ACT_DIM: Final = 2
MLP_CONFIG_BYTES: Final = 4 * (
    MLP_OBS_DIM * MLP_HIDDEN + MLP_HIDDEN + MLP_HIDDEN * MLP_ACT_DIM + MLP_ACT_DIM
)
"""Length of the ``mlp_controller`` configuration blob (712 bytes)."""

MlpWeights = tuple[
    NDArray[np.float32], NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]
]
"""``(W1 (8, 16), b1 (16,), W2 (16, 2), b2 (2,))``, float32."""


def mlp_config_blob(
    w1: NDArray[np.float32],
    b1: NDArray[np.float32],
    w2: NDArray[np.float32],
    b2: NDArray[np.float32],
) -> bytes:
    """The ``mlp_controller`` config: little-endian float32 W1, b1, W2, b2, row-major."""
    shapes = ((MLP_OBS_DIM, MLP_HIDDEN), (MLP_HIDDEN,), (MLP_HIDDEN, MLP_ACT_DIM), (MLP_ACT_DIM,))
    parts = []
    for name, array, shape in zip(("W1", "b1", "W2", "b2"), (w1, b1, w2, b2), shapes, strict=True):
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
        parts.append(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return b"".join(parts)


def mlp_weights_from_blob(blob: bytes) -> MlpWeights:
    """Inverse of :func:`mlp_config_blob`."""
    if len(blob) != MLP_CONFIG_BYTES:
        raise ValueError(f"mlp_controller config must be {MLP_CONFIG_BYTES} bytes, got {len(blob)}")
    flat = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    a = MLP_OBS_DIM * MLP_HIDDEN
    b = a + MLP_HIDDEN
    c = b + MLP_HIDDEN * MLP_ACT_DIM
    return (
        flat[:a].reshape(MLP_OBS_DIM, MLP_HIDDEN).copy(),
        flat[a:b].copy(),
        flat[b:c].reshape(MLP_HIDDEN, MLP_ACT_DIM).copy(),
        flat[c:].copy(),
    )


def mlp_controller_numpy(
    obs: NDArray[np.float32],
    w1: NDArray[np.float32],
    b1: NDArray[np.float32],
    w2: NDArray[np.float32],
    b2: NDArray[np.float32],
) -> NDArray[np.float32]:
    """``(n, 8)`` observations -> ``(n, 2)`` actions, in ``mlp_controller.c``'s order.

    ``h = relu(b1 + x W1)``, ``a = b2 + h W2``; each sum starts from the bias and adds
    the products one input at a time; ``relu(z) = z if z > 0 else 0``.
    """
    n = obs.shape[0]
    x = obs.astype(np.float32, copy=False)
    hidden = np.broadcast_to(b1.astype(np.float32), (n, MLP_HIDDEN)).copy()
    for i in range(MLP_OBS_DIM):
        hidden += x[:, i : i + 1] * w1[i].astype(np.float32)
    hidden = np.where(hidden > np.float32(0.0), hidden, np.float32(0.0)).astype(np.float32)
    out = np.broadcast_to(b2.astype(np.float32), (n, MLP_ACT_DIM)).copy()
    for j in range(MLP_HIDDEN):
        out += hidden[:, j : j + 1] * w2[j].astype(np.float32)
    return out


ANOMALY_OBS_DIM: Final = 8
ANOMALY_STATE_DIM: Final = 1
ANOMALY_ACT_DIM: Final = 2
ANOMALY_KEEP: Final = 0.8
ANOMALY_GAIN: Final = 0.2
ANOMALY_THRESHOLD: Final = 0.5

_KEEP = np.float32(ANOMALY_KEEP)
_GAIN = np.float32(ANOMALY_GAIN)
_THRESHOLD = np.float32(ANOMALY_THRESHOLD)


def anomaly_numpy(
    scores: NDArray[np.float32], state: NDArray[np.float32], out_actions: NDArray[np.float32]
) -> int:
    """One ``anomaly.c`` step given the model's ``(n, 1)`` (or ``(n,)``) scores.

    Updates ``state`` ``(n, 1)`` in place (``e = 0.8*e + 0.2*score``), writes
    ``out_actions`` ``(n, 2)`` = ``[score, 1.0 if e > 0.5 else 0.0]`` and returns the
    number of alarmed agents (what the module adds to counter ``anomalies``).
    """
    s = scores.reshape(-1).astype(np.float32, copy=False)
    e = _KEEP * state[:, 0] + _GAIN * s
    state[:, 0] = e
    alarm = e > _THRESHOLD
    out_actions[:, 0] = s
    out_actions[:, 1] = alarm.astype(np.float32)
    return int(np.count_nonzero(alarm))


_SUSPECT: Final = np.float32(0.12)
_CLEAR: Final = np.float32(0.2)
_MAX_ESCALATE: Final = 16
_PENDING: Final = np.float32(0.5)
_CONFIRMED: Final = np.float32(1.0)


def escalate_numpy(
    scores: NDArray[np.float32],
    results: tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float32]],
    state: NDArray[np.float32],
    out_actions: NDArray[np.float32],
) -> tuple[NDArray[np.bool_], int]:
    """One ``escalate.c`` step given the light model's scores and the heavy results
    it reads (agent indices, statuses, ``(k, 2)`` triage outputs).

    Updates ``state`` ``(n, 2)`` in place, writes ``out_actions``; returns the
    escalation mask (the agents it asks ``triage`` for) and the alarm count.
    """
    agents, statuses, verdicts = results
    for i, status, verdict in zip(agents.tolist(), statuses.tolist(), verdicts[:, 0], strict=True):
        if 0 <= i < state.shape[0]:
            state[i, 1] = _CONFIRMED if status == 0 and verdict > 0.5 else np.float32(0.0)
    s = scores.reshape(-1).astype(np.float32, copy=False)
    e = (_KEEP * state[:, 0] + _GAIN * s).astype(np.float32)
    state[:, 0] = e
    flag = state[:, 1].copy()
    flag[(flag == _CONFIRMED) & (e < _CLEAR)] = 0.0
    candidates = np.flatnonzero((flag == 0.0) & (e > _SUSPECT))
    # the highest e first, the lower index first among equals
    candidates = candidates[np.lexsort((candidates, -e[candidates]))][:_MAX_ESCALATE]
    mask = np.zeros(state.shape[0], dtype=bool)
    mask[candidates] = True
    flag[mask] = _PENDING
    state[:, 1] = flag
    alarm = (flag == _CONFIRMED) | (e > _THRESHOLD)
    out_actions[:, 0] = s
    out_actions[:, 1] = alarm.astype(np.float32)
    return mask, int(np.count_nonzero(alarm))
