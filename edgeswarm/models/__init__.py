"""Light-model layer: float32 MLPs as ``.tflite`` files run on the LiteRT interpreter."""

from __future__ import annotations

from edgeswarm.models.anomaly import (
    ANOMALY_ACTIVATIONS,
    ANOMALY_INPUT_DIM,
    anomaly_layers,
    anomaly_reference,
    write_anomaly_model,
)
from edgeswarm.models.errors import ModelError, ModelInputError, ModelLoadError, ModelNotFound
from edgeswarm.models.litert import LiteRTModel, ModelRegistry
from edgeswarm.models.tflite_writer import (
    ACTIVATIONS,
    Layer,
    mlp_reference_forward,
    write_mlp_tflite,
)

__all__ = [
    "ACTIVATIONS",
    "ANOMALY_ACTIVATIONS",
    "ANOMALY_INPUT_DIM",
    "Layer",
    "LiteRTModel",
    "ModelError",
    "ModelInputError",
    "ModelLoadError",
    "ModelNotFound",
    "ModelRegistry",
    "anomaly_layers",
    "anomaly_reference",
    "mlp_reference_forward",
    "write_anomaly_model",
    "write_mlp_tflite",
]
