"""Write float32 multi-layer perceptrons as ``.tflite`` flatbuffers, without TensorFlow.

The file is built with the object-API schema bindings shipped by ``ai-edge-litert``
(:mod:`ai_edge_litert.schema_py_generated`) and the ``flatbuffers`` runtime.

Graph layout for ``layers = [(W0, b0), (W1, b1), ...]``::

    input [1, in0] (signature [-1, in0])
      -> FULLY_CONNECTED(W0^T, b0, fused RELU|NONE) [-> TANH | LOGISTIC]
      -> FULLY_CONNECTED(W1^T, b1, ...) ...
      -> output [1, out_last] (signature [-1, out_last])

Weights are given as ``(in, out)`` (the ``x @ W + b`` convention) and stored transposed
as ``(out, in)``, which is what TFLite's FULLY_CONNECTED expects. Constant buffers are
16-byte aligned. The same weights always produce the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from numpy.typing import NDArray

__all__ = ["ACTIVATIONS", "Layer", "check_layers", "mlp_reference_forward", "write_mlp_tflite"]

Layer = tuple[NDArray[np.float32], NDArray[np.float32]]

#: Supported activation names.
ACTIVATIONS: Final[frozenset[str]] = frozenset({"relu", "tanh", "linear", "sigmoid"})

_SCHEMA_VERSION: Final = 3
_BUFFER_ALIGNMENT: Final = 16
_FILE_IDENTIFIER: Final = b"TFL3"


class _AlignedBuffer:
    """Stand-in for ``schema.BufferT`` whose data vector is 16-byte aligned.

    ``ModelT.Pack`` only calls ``.Pack(builder)`` on each buffer entry, so duck typing is
    enough; ``BufferT.Pack`` would align raw bytes to 1 only.
    """

    def __init__(self, data: bytes | None) -> None:
        self._data = data

    def Pack(self, builder: Any) -> int:  # noqa: N802 - flatbuffers object-API name
        data_off = 0
        if self._data is not None:
            n = len(self._data)
            builder.StartVector(1, n, _BUFFER_ALIGNMENT)
            builder.head = builder.head - n
            builder.Bytes[builder.head : builder.head + n] = self._data
            data_off = builder.EndVector()
        schema.BufferStart(builder)
        if self._data is not None:
            schema.BufferAddData(builder, data_off)
        return int(schema.BufferEnd(builder))


def check_layers(
    layers: Sequence[Layer], activations: Sequence[str]
) -> list[tuple[NDArray[np.float32], NDArray[np.float32]]]:
    """The layers as arrays once shapes, dtypes, activations and values are checked."""
    if len(layers) == 0:
        raise ValueError("an MLP needs at least one layer")
    if len(layers) != len(activations):
        raise ValueError(f"got {len(layers)} layers but {len(activations)} activations")
    out: list[tuple[NDArray[np.float32], NDArray[np.float32]]] = []
    prev_out: int | None = None
    for i, ((w, b), act) in enumerate(zip(layers, activations, strict=True)):
        if act not in ACTIVATIONS:
            raise ValueError(f"layer {i}: unknown activation {act!r}; use {sorted(ACTIVATIONS)}")
        w_arr = np.asarray(w)
        b_arr = np.asarray(b)
        if w_arr.dtype != np.float32 or b_arr.dtype != np.float32:
            raise TypeError(f"layer {i}: weights and bias must be float32")
        if w_arr.ndim != 2 or 0 in w_arr.shape:
            raise ValueError(f"layer {i}: weights must be a non-empty (in, out) matrix")
        if b_arr.shape != (w_arr.shape[1],):
            raise ValueError(f"layer {i}: bias shape {b_arr.shape} != ({w_arr.shape[1]},)")
        if prev_out is not None and w_arr.shape[0] != prev_out:
            raise ValueError(f"layer {i}: input width {w_arr.shape[0]} != previous {prev_out}")
        if not (np.isfinite(w_arr).all() and np.isfinite(b_arr).all()):
            raise ValueError(f"layer {i}: weights and bias must be finite")
        prev_out = int(w_arr.shape[1])
        out.append((w_arr, b_arr))
    return out


def _le_bytes(a: NDArray[np.float32]) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def write_mlp_tflite(
    layers: Sequence[Layer],
    activations: Sequence[str],
    path: Path | None = None,
) -> bytes:
    """Serialize a float32 MLP to ``.tflite`` bytes (and write them to ``path`` if given).

    Args:
        layers: ``(weights (in, out), bias (out,))`` float32 pairs, in order.
        activations: one of ``"relu" | "tanh" | "linear" | "sigmoid"`` per layer.
        path: optional destination file; parent directories must exist.

    Returns:
        The flatbuffer bytes (identifier ``TFL3``).

    Raises:
        ValueError: inconsistent shapes, unknown activation, non-finite values.
        TypeError: weights or bias not float32.
    """
    checked = check_layers(layers, activations)

    tensors: list[Any] = []
    buffers: list[Any] = [_AlignedBuffer(None)]  # buffer 0: the conventional empty sentinel
    operators: list[Any] = []

    opcode_index: dict[int, int] = {}
    operator_codes: list[Any] = []

    def opcode(builtin: int) -> int:
        if builtin not in opcode_index:
            code = schema.OperatorCodeT()
            code.builtinCode = builtin
            code.deprecatedBuiltinCode = min(builtin, 127)
            code.version = 1
            opcode_index[builtin] = len(operator_codes)
            operator_codes.append(code)
        return opcode_index[builtin]

    def add_tensor(name: str, shape: list[int], data: bytes | None, dynamic: bool) -> int:
        t = schema.TensorT()
        t.name = name
        t.type = schema.TensorType.FLOAT32
        t.shape = list(shape)
        if dynamic:
            t.shapeSignature = [-1, *shape[1:]]
        if data is None:
            t.buffer = 0
        else:
            t.buffer = len(buffers)
            buffers.append(_AlignedBuffer(data))
        tensors.append(t)
        return len(tensors) - 1

    in_dim = int(checked[0][0].shape[0])
    current = add_tensor("input", [1, in_dim], None, dynamic=True)
    last = len(checked) - 1

    for i, ((w, b), act) in enumerate(zip(checked, activations, strict=True)):
        out_dim = int(w.shape[1])
        w_idx = add_tensor(f"dense_{i}/kernel", [out_dim, int(w.shape[0])], _le_bytes(w.T), False)
        b_idx = add_tensor(f"dense_{i}/bias", [out_dim], _le_bytes(b), False)
        separate = act in ("tanh", "sigmoid")
        fc_name = "output" if (i == last and not separate) else f"dense_{i}/matmul"
        fc_out = add_tensor(fc_name, [1, out_dim], None, dynamic=True)

        opts = schema.FullyConnectedOptionsT()
        opts.fusedActivationFunction = (
            schema.ActivationFunctionType.RELU
            if act == "relu"
            else schema.ActivationFunctionType.NONE
        )
        opts.weightsFormat = schema.FullyConnectedOptionsWeightsFormat.DEFAULT
        opts.keepNumDims = False
        fc = schema.OperatorT()
        fc.opcodeIndex = opcode(schema.BuiltinOperator.FULLY_CONNECTED)
        fc.inputs = [current, w_idx, b_idx]
        fc.outputs = [fc_out]
        fc.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
        fc.builtinOptions = opts
        operators.append(fc)
        current = fc_out

        if separate:
            act_name = "output" if i == last else f"dense_{i}/{act}"
            act_out = add_tensor(act_name, [1, out_dim], None, dynamic=True)
            op = schema.OperatorT()
            builtin = (
                schema.BuiltinOperator.TANH if act == "tanh" else schema.BuiltinOperator.LOGISTIC
            )
            op.opcodeIndex = opcode(builtin)
            op.inputs = [current]
            op.outputs = [act_out]
            operators.append(op)
            current = act_out

    subgraph = schema.SubGraphT()
    subgraph.name = "main"
    subgraph.tensors = tensors
    subgraph.inputs = [0]
    subgraph.outputs = [current]
    subgraph.operators = operators

    model = schema.ModelT()
    model.version = _SCHEMA_VERSION
    model.description = "edgeswarm mlp"
    model.operatorCodes = operator_codes
    model.subgraphs = [subgraph]
    model.buffers = buffers

    builder = flatbuffers.Builder(4096)
    builder.Finish(model.Pack(builder), file_identifier=_FILE_IDENTIFIER)
    data = bytes(builder.Output())
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _apply_activation(z: NDArray[np.float64], act: str) -> NDArray[np.float64]:
    if act == "relu":
        return np.maximum(z, 0.0)
    if act == "tanh":
        return np.tanh(z)
    if act == "sigmoid":
        # 0.5 * (1 + tanh(z / 2)) == 1 / (1 + exp(-z)) without exp overflow warnings.
        return 0.5 * (1.0 + np.tanh(0.5 * z))
    if act == "linear":
        return z
    raise ValueError(f"unknown activation {act!r}")


def mlp_reference_forward(
    layers: Sequence[Layer], activations: Sequence[str], x: NDArray[np.float32]
) -> NDArray[np.float32]:
    """NumPy forward pass of the same MLP (float64 accumulation, float32 result)."""
    checked = check_layers(layers, activations)
    h: NDArray[np.float64] = np.asarray(x, dtype=np.float64)
    for (w, b), act in zip(checked, activations, strict=True):
        h = _apply_activation(h @ w.astype(np.float64) + b.astype(np.float64), act)
    return h.astype(np.float32)
