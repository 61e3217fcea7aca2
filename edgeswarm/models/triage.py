"""The demo's heavy model: a triage MLP that confirms the anomaly detector's suspects.

Architecture ``8 -> 64 (relu) -> 64 (relu) -> 2 (sigmoid)``, float32, too big to
run for every agent on an IoT gateway every tick and made for batches on an
inference node. Output column 0 is the probability that a suspect is a real
anomaly, column 1 its severity (both in (0, 1)). The weights are fixed: a
"far from the rest" detector on the first layer (units that fire past ±2 on
each observation), spread by seeded noise (``numpy.random.default_rng(TRIAGE_SEED)``).

The same weights are written as ONNX (:func:`write_triage_onnx`, ONNX Runtime on
CPU or GPU) and as ``.tflite`` (:func:`write_triage_tflite`, LiteRT);
:func:`triage_reference` is the numpy reference both must equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
from numpy.typing import NDArray

from edgeswarm.models.onnx_writer import write_mlp_onnx
from edgeswarm.models.tflite_writer import Layer, mlp_reference_forward, write_mlp_tflite

__all__ = [
    "TRIAGE_ACTIVATIONS",
    "TRIAGE_HIDDEN",
    "TRIAGE_INPUT_DIM",
    "TRIAGE_MODEL",
    "TRIAGE_OUTPUT_DIM",
    "TRIAGE_SEED",
    "triage_layers",
    "triage_reference",
    "write_triage_onnx",
    "write_triage_tflite",
]

TRIAGE_MODEL: Final = "triage"
"""The model's name on the heavy lane (the file stem the demo writes)."""
TRIAGE_INPUT_DIM: Final = 8
TRIAGE_HIDDEN: Final = 64
TRIAGE_OUTPUT_DIM: Final = 2
TRIAGE_SEED: Final = 0x7A1A
TRIAGE_ACTIVATIONS: Final[tuple[str, str, str]] = ("relu", "relu", "sigmoid")


def triage_layers(seed: int = TRIAGE_SEED) -> list[Layer]:
    """The three ``(W (in, out), b (out,))`` float32 layers."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 0.05, (TRIAGE_INPUT_DIM, TRIAGE_HIDDEN))
    for i in range(TRIAGE_INPUT_DIM):  # units 2i and 2i+1 fire on x_i > 2 and x_i < -2
        w1[i, 2 * i] += 1.0
        w1[i, 2 * i + 1] -= 1.0
    b1 = np.full(TRIAGE_HIDDEN, -2.0)
    b1[2 * TRIAGE_INPUT_DIM :] = rng.normal(0.0, 0.1, TRIAGE_HIDDEN - 2 * TRIAGE_INPUT_DIM)
    w2 = rng.normal(0.0, 1.0 / np.sqrt(TRIAGE_HIDDEN), (TRIAGE_HIDDEN, TRIAGE_HIDDEN))
    w2[: 2 * TRIAGE_INPUT_DIM, 0] = 1.5  # hidden unit 0 sums the excesses
    b2 = rng.normal(0.0, 0.05, TRIAGE_HIDDEN)
    w3 = rng.normal(0.0, 0.1, (TRIAGE_HIDDEN, TRIAGE_OUTPUT_DIM))
    w3[0, 0], w3[0, 1] = 4.0, 2.0
    b3 = np.array([-2.0, -1.0])
    return [(w.astype(np.float32), b.astype(np.float32)) for w, b in ((w1, b1), (w2, b2), (w3, b3))]


def write_triage_onnx(path: Path | None = None, seed: int = TRIAGE_SEED) -> bytes:
    """The model as ONNX bytes (also written to ``path`` if given)."""
    return write_mlp_onnx(triage_layers(seed), TRIAGE_ACTIVATIONS, path, name=TRIAGE_MODEL)


def write_triage_tflite(path: Path | None = None, seed: int = TRIAGE_SEED) -> bytes:
    """The same model as ``.tflite`` bytes (also written to ``path`` if given)."""
    return write_mlp_tflite(triage_layers(seed), TRIAGE_ACTIVATIONS, path)


def triage_reference(x: NDArray[np.float32], seed: int = TRIAGE_SEED) -> NDArray[np.float32]:
    """NumPy forward pass: ``(n, 8)`` -> ``(n, 2)``."""
    return mlp_reference_forward(triage_layers(seed), TRIAGE_ACTIVATIONS, x)
