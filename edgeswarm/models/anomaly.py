"""A tiny fixed-weight anomaly detector for 8-dim float32 observations.

Architecture: ``8 -> 16 (relu) -> 1 (sigmoid)``; the output is an anomaly score in (0, 1).

The weights are deterministic: a readable "soft 3-sigma" detector plus a small jitter
drawn from ``numpy.random.default_rng(ANOMALY_SEED)``. Hidden unit ``2i`` fires on
``x_i > 3`` and unit ``2i + 1`` on ``x_i < -3`` (observations are assumed standardized);
the output is ``sigmoid(4 * sum(excess) - 2)``, i.e. about 0.12 for in-range observations
and above 0.5 once one feature is ~0.5 past the threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from edgeswarm.models.tflite_writer import Layer, mlp_reference_forward, write_mlp_tflite

__all__ = [
    "ANOMALY_ACTIVATIONS",
    "ANOMALY_HIDDEN",
    "ANOMALY_INPUT_DIM",
    "ANOMALY_SEED",
    "anomaly_layers",
    "anomaly_reference",
    "write_anomaly_model",
]

ANOMALY_INPUT_DIM: Final = 8
ANOMALY_HIDDEN: Final = 16
ANOMALY_SEED: Final = 0x5EED
ANOMALY_ACTIVATIONS: Final[tuple[str, str]] = ("relu", "sigmoid")

_THRESHOLD: Final = 3.0
_GAIN: Final = 4.0
_OFFSET: Final = 2.0
_JITTER: Final = 0.01


def anomaly_layers(seed: int = ANOMALY_SEED) -> list[Layer]:
    """The detector's ``[(W1 (8, 16), b1 (16,)), (W2 (16, 1), b2 (1,))]`` float32 weights."""
    rng = np.random.default_rng(seed)
    w1 = np.zeros((ANOMALY_INPUT_DIM, ANOMALY_HIDDEN), dtype=np.float64)
    for i in range(ANOMALY_INPUT_DIM):
        w1[i, 2 * i] = 1.0
        w1[i, 2 * i + 1] = -1.0
    b1 = np.full(ANOMALY_HIDDEN, -_THRESHOLD, dtype=np.float64)
    w2 = np.full((ANOMALY_HIDDEN, 1), _GAIN, dtype=np.float64)
    b2 = np.array([-_OFFSET], dtype=np.float64)
    w1 += rng.normal(0.0, _JITTER, w1.shape)
    w2 += rng.normal(0.0, _JITTER, w2.shape)
    return [
        (w1.astype(np.float32), b1.astype(np.float32)),
        (w2.astype(np.float32), b2.astype(np.float32)),
    ]


def write_anomaly_model(path: Path | None = None, seed: int = ANOMALY_SEED) -> bytes:
    """Serialize the detector to ``.tflite`` bytes, also writing them to ``path`` if given."""
    return write_mlp_tflite(anomaly_layers(seed), ANOMALY_ACTIVATIONS, path)


def anomaly_reference(x: NDArray[np.float32], seed: int = ANOMALY_SEED) -> NDArray[np.float32]:
    """NumPy forward pass: ``(n, 8)`` observations -> ``(n, 1)`` anomaly scores."""
    return mlp_reference_forward(anomaly_layers(seed), ANOMALY_ACTIVATIONS, x)
