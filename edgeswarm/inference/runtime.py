"""Models an inference node serves: ONNX through ONNX Runtime, ``.tflite`` through LiteRT.

:func:`load_model` opens one file as a :class:`ServedModel`: a float32 model with
one ``(batch, in)`` input and one ``(batch, out)`` output, run a whole batch at a
time. ONNX models run on ONNX Runtime's CUDA execution provider when
``device`` is ``cuda``, or ``auto`` and the provider is there
(``onnxruntime-gpu``, the ``gpu`` extra, on a machine with a GPU), and on its
CPU provider otherwise; ``.tflite`` models run on LiteRT's CPU interpreter.
``device="cuda"`` without a working CUDA provider is refused
(:class:`~edgeswarm.inference.errors.ModelUnavailableError`), never silently run on
the CPU.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import numpy as np
from numpy.typing import NDArray

from edgeswarm.models import LiteRTModel, ModelError, ModelInputError
from edgeswarm.resource import Resource

from .errors import ModelUnavailableError, TensorError

__all__ = [
    "DEVICES",
    "Device",
    "OnnxModel",
    "ServedModel",
    "TfliteModel",
    "cuda_available",
    "load_model",
]

Device = Literal["auto", "cuda", "cpu"]
"""Where ONNX models run: ``cuda`` (required), ``cpu``, or ``auto`` (CUDA when present)."""
DEVICES: tuple[str, ...] = get_args(Device)

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class ServedModel(Protocol):
    """One model as the node serves it."""

    name: str
    """Name on the heavy lane and in OIP URLs (the file stem)."""
    platform: str
    """OIP platform string: ``onnx_onnxv1`` or ``tflite``."""
    device: str
    """Where it runs: ``cuda`` or ``cpu``."""
    input_name: str
    output_name: str
    input_dim: int
    output_dim: int

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n, input_dim)`` float32 rows -> ``(n, output_dim)``; raises ``TensorError``."""
        ...

    def close(self) -> None: ...


def cuda_available() -> bool:
    """Whether ONNX Runtime was built with the CUDA provider (``onnxruntime-gpu``)."""
    import onnxruntime as ort

    return CUDA_PROVIDER in ort.get_available_providers()


def _check_rows(x: NDArray[np.float32], name: str, input_dim: int) -> NDArray[np.float32]:
    if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != input_dim or x.shape[0] < 1:
        raise TensorError(
            f"model {name!r} takes (n >= 1, {input_dim}) float32 rows, got {x.dtype} {x.shape}"
        )
    return np.ascontiguousarray(x)


@dataclass
class OnnxModel(Resource):
    """An ONNX model on an ONNX Runtime session (thread-safe: ``run`` may be called
    from several threads)."""

    name: str
    session: Any
    device: str
    input_name: str
    output_name: str
    input_dim: int
    output_dim: int
    platform: str = "onnx_onnxv1"

    @classmethod
    def open(cls, path: Path, *, device: Device, threads: int | None = None) -> OnnxModel:
        import onnxruntime as ort

        if device == "cuda" and not cuda_available():
            raise ModelUnavailableError(
                f"{path}: --device cuda needs onnxruntime-gpu with CUDA "
                "(pip install 'edgeswarm[gpu]'); use --device auto or cpu"
            )
        providers = [CPU_PROVIDER]
        if device == "cuda" or (device == "auto" and cuda_available()):
            providers = [CUDA_PROVIDER, CPU_PROVIDER]
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the node logs its own JSON lines
        # Idle intra-op threads sleep instead of spinning: a spinning pool takes the CPU the
        # node's event loop (and, on a small machine, the gateway beside it) needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise ModelUnavailableError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc
        used = session.get_providers()
        if device == "cuda" and CUDA_PROVIDER not in used:
            raise ModelUnavailableError(f"{path}: the CUDA provider did not start (no GPU?)")
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelUnavailableError(f"{path}: needs exactly one input and one output")
        for tensor in (inputs[0], outputs[0]):
            shape = tensor.shape
            if tensor.type != "tensor(float)" or len(shape) != 2 or not isinstance(shape[1], int):
                raise ModelUnavailableError(
                    f"{path}: {tensor.name} must be float32 (batch, k), is {tensor.type} {shape}"
                )
        return cls(
            name=path.stem,
            session=session,
            device="cuda" if CUDA_PROVIDER in used else "cpu",
            input_name=inputs[0].name,
            output_name=outputs[0].name,
            input_dim=int(inputs[0].shape[1]),
            output_dim=int(outputs[0].shape[1]),
        )

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        rows = _check_rows(x, self.name, self.input_dim)
        session = self.session
        if session is None:
            raise TensorError(f"model {self.name!r} is closed")
        out: NDArray[np.float32] = session.run([self.output_name], {self.input_name: rows})[0]
        return out

    def close(self) -> None:
        self.session = None


class TfliteModel(Resource):
    """A ``.tflite`` model on LiteRT (its interpreter serializes calls with a lock)."""

    platform = "tflite"
    device = "cpu"
    input_name = "input"
    output_name = "output"

    def __init__(self, path: Path, *, threads: int | None = None) -> None:
        try:
            self._model = LiteRTModel.from_path(path, num_threads=threads)
        except ModelError as exc:
            raise ModelUnavailableError(str(exc)) from exc
        self.name = path.stem
        self.input_dim = self._model.input_dim
        self.output_dim = self._model.output_dim
        self._lock = threading.Lock()

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        rows = _check_rows(x, self.name, self.input_dim)
        try:
            return self._model.predict(rows)
        except ModelInputError as exc:
            raise TensorError(str(exc)) from exc

    def close(self) -> None:
        self._model.close()


def load_model(path: str | os.PathLike[str], *, device: Device = "auto") -> ServedModel:
    """Open ``path`` (``.onnx`` or ``.tflite``); raises :class:`ModelUnavailableError`."""
    file = Path(path)
    if not file.is_file():
        raise ModelUnavailableError(f"{file}: no such model file")
    if file.suffix == ".onnx":
        return OnnxModel.open(file, device=device)
    if file.suffix == ".tflite":
        if device == "cuda":
            raise ModelUnavailableError(f"{file}: .tflite models run on the CPU (LiteRT); not cuda")
        return TfliteModel(file)
    raise ModelUnavailableError(f"{file}: not a model file (.onnx or .tflite)")
