"""Write float32 multi-layer perceptrons as ONNX models with the ``onnx`` helpers.

The graph for ``layers = [(W0, b0), (W1, b1), ...]`` (weights ``(in, out)``, the
``x @ W + b`` convention, as :mod:`edgeswarm.models.tflite_writer` takes them)::

    input [batch, in0] -> Gemm(W0, b0) [-> Relu | Tanh | Sigmoid] -> Gemm(W1, b1) ...
      -> output [batch, out_last]

``batch`` is a symbolic dimension, so one model serves every batch size. The
same weights give the same bytes; ONNX Runtime runs the result
(``edgeswarm.inference.runtime``) and :func:`~edgeswarm.models.tflite_writer.mlp_reference_forward`
is its numpy reference. No PyTorch or TensorFlow is involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeswarm.models.tflite_writer import Layer, check_layers

__all__ = ["INPUT_NAME", "ONNX_IR_VERSION", "ONNX_OPSET", "OUTPUT_NAME", "write_mlp_onnx"]

INPUT_NAME: Final = "input"
"""Name of the model's one input tensor, ``(batch, in)`` float32."""
OUTPUT_NAME: Final = "output"
"""Name of the model's one output tensor, ``(batch, out)`` float32."""
ONNX_OPSET: Final = 17
"""Default-domain opset the graph is written for (Gemm, Relu, Tanh, Sigmoid)."""
ONNX_IR_VERSION: Final = 8
"""IR version written: the one opset 17 came with, so older runtimes load it too."""

_ACTIVATION_OPS: Final = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}


def write_mlp_onnx(
    layers: Sequence[Layer],
    activations: Sequence[str],
    path: Path | None = None,
    *,
    name: str = "edgeswarm-mlp",
) -> bytes:
    """Serialize a float32 MLP to ONNX bytes (and write them to ``path`` if given).

    Raises ``ValueError``/``TypeError`` as ``write_mlp_tflite`` does for bad layers.
    """
    checked = check_layers(layers, activations)
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    current = INPUT_NAME
    last = len(checked) - 1
    for i, ((w, b), act) in enumerate(zip(checked, activations, strict=True)):
        weight, bias = f"dense_{i}/kernel", f"dense_{i}/bias"
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(w, "<f4"), weight))
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(b, "<f4"), bias))
        op = _ACTIVATION_OPS.get(act)
        gemm_out = OUTPUT_NAME if (i == last and op is None) else f"dense_{i}/gemm"
        nodes.append(helper.make_node("Gemm", [current, weight, bias], [gemm_out]))
        current = gemm_out
        if op is not None:
            act_out = OUTPUT_NAME if i == last else f"dense_{i}/{act}"
            nodes.append(helper.make_node(op, [current], [act_out]))
            current = act_out
    in_dim, out_dim = int(checked[0][0].shape[0]), int(checked[-1][0].shape[1])
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", in_dim])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", out_dim])],
        initializer=initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="edgeswarm",
        ir_version=ONNX_IR_VERSION,
    )
    onnx.checker.check_model(model, full_check=True)
    data: bytes = model.SerializeToString()
    if path is not None:
        Path(path).write_bytes(data)
    return data
