"""Models: float32 MLPs written as ``.tflite`` (run on the LiteRT interpreter) and as ONNX."""

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
from edgeswarm.models.onnx_writer import write_mlp_onnx
from edgeswarm.models.tflite_writer import (
    ACTIVATIONS,
    Layer,
    mlp_reference_forward,
    write_mlp_tflite,
)
from edgeswarm.models.triage import (
    TRIAGE_MODEL,
    triage_reference,
    write_triage_onnx,
    write_triage_tflite,
)

__all__ = [
    "ACTIVATIONS",
    "ANOMALY_ACTIVATIONS",
    "ANOMALY_INPUT_DIM",
    "TRIAGE_MODEL",
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
    "triage_reference",
    "write_anomaly_model",
    "write_mlp_onnx",
    "write_mlp_tflite",
    "write_triage_onnx",
    "write_triage_tflite",
]
