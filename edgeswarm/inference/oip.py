"""Open Inference Protocol v2 (KServe v2, HTTP/REST) bodies, as pure functions.

Both ends of the protocol that edgeswarm speaks: the inference node's server
(:mod:`edgeswarm.inference.oip_server`) parses requests and builds responses,
the gateway's OIP forwarder (:mod:`edgeswarm.inference.oip_forwarder`) builds
requests and parses responses. Tensors travel as JSON arrays or, with the
binary tensor data extension (``binary_tensor_data``), as raw little-endian
bytes after the JSON object, whose length the ``Inference-Header-Content-Length``
header gives; each binary tensor says its size in ``parameters.binary_data_size``.

Models here are float32 ``(batch, k)``: one ``FP32`` input, one ``FP32`` output.
Anything else in a request is a :class:`~edgeswarm.inference.errors.TensorError`
naming what is wrong (the server answers it with HTTP 400 ``{"error": ...}``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ForwardError, TensorError

__all__ = [
    "BINARY_EXTENSION",
    "HEADER_LENGTH",
    "InferCall",
    "decode_infer_response",
    "encode_infer_request",
    "encode_infer_response",
    "parse_infer_request",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
"""Header giving the length of the JSON object when binary tensors follow it."""
BINARY_EXTENSION = "binary_tensor_data"
"""Name of the binary tensor data extension in the server metadata."""
_FP32 = "FP32"


@dataclass(frozen=True, eq=False)
class InferCall:
    """A checked inference request."""

    request_id: str | None
    """The request's ``id``, returned in the response."""
    rows: NDArray[np.float32]
    """The input tensor, ``(n, input_dim)``."""
    binary_output: bool
    """Whether the output goes back as binary data."""


def _json(data: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TensorError(f"request body is not JSON: {exc}") from exc
    except RecursionError:
        raise TensorError("request body is JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise TensorError("request body must be a JSON object")
    return obj


def _flag(parameters: object, key: str) -> bool | None:
    if not isinstance(parameters, dict) or key not in parameters:
        return None
    value = parameters[key]
    if not isinstance(value, bool):
        raise TensorError(f"parameter {key!r} must be a boolean")
    return value


def parse_infer_request(
    body: bytes,
    header_length: int | None,
    *,
    input_name: str,
    input_dim: int,
    output_name: str,
    max_rows: int,
) -> InferCall:
    """Check an inference request against a ``(batch, input_dim)`` FP32 model."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise TensorError(f"{HEADER_LENGTH} {header_length} does not fit a {len(body)}-byte body")
    head = _json(body[:header_length] if header_length is not None else body)
    binary = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    request_id = head.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise TensorError("'id' must be a string")
    inputs = head.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise TensorError(f"'inputs' must hold exactly one tensor, {input_name!r}")
    tensor = inputs[0]
    if tensor.get("name") != input_name:
        raise TensorError(f"unknown input {tensor.get('name')!r}; the model takes {input_name!r}")
    if tensor.get("datatype") != _FP32:
        raise TensorError(f"input {input_name!r} must be {_FP32}, got {tensor.get('datatype')!r}")
    shape = tensor.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(type(d) is int for d in shape)
        or shape[1] != input_dim
        or not 1 <= shape[0] <= max_rows
    ):
        raise TensorError(
            f"input {input_name!r} must have shape [n, {input_dim}] with 1 <= n <= {max_rows}, "
            f"got {shape!r}"
        )
    count = shape[0] * shape[1]
    size = _binary_size(tensor.get("parameters"))
    if size is not None:
        if size != count * 4 or len(binary) != size:
            raise TensorError(
                f"input {input_name!r} of shape {shape} needs {count * 4} bytes; "
                f"binary_data_size says {size}, the body holds {len(binary)}"
            )
        rows = np.frombuffer(binary, dtype="<f4").reshape(shape)
    else:
        if len(binary):
            raise TensorError("binary data follows the JSON but no input declares it")
        rows = _json_rows(tensor.get("data"), shape, input_name)
    return InferCall(
        request_id=request_id,
        rows=rows,
        binary_output=_binary_output(head, output_name),
    )


def _binary_size(parameters: object) -> int | None:
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if type(size) is not int or size < 0:
        raise TensorError("'binary_data_size' must be a non-negative integer")
    return size


def _json_rows(data: object, shape: list[int], name: str) -> NDArray[np.float32]:
    if not isinstance(data, list):
        raise TensorError(f"input {name!r} has no 'data' (and no binary_data_size)")
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TensorError(f"input {name!r}: data must be numbers: {exc}") from exc
    if values.size != shape[0] * shape[1]:
        raise TensorError(f"input {name!r}: {values.size} values for shape {shape}")
    return values.astype(np.float32).reshape(shape)


def _binary_output(head: dict[str, Any], output_name: str) -> bool:
    default = bool(_flag(head.get("parameters"), "binary_data_output"))
    outputs = head.get("outputs")
    if outputs is None:
        return default
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise TensorError("'outputs' must be a list of objects")
    for requested in outputs:
        if requested.get("name") != output_name:
            raise TensorError(
                f"unknown output {requested.get('name')!r}; the model gives {output_name!r}"
            )
        flag = _flag(requested.get("parameters"), "binary_data")
        if flag is not None:
            return flag
    return default


def encode_infer_response(
    *,
    model_name: str,
    request_id: str | None,
    output_name: str,
    outputs: NDArray[np.float32],
    binary: bool,
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers."""
    tensor: dict[str, Any] = {
        "name": output_name,
        "shape": list(outputs.shape),
        "datatype": _FP32,
    }
    raw = np.ascontiguousarray(outputs, dtype="<f4").tobytes()
    if binary:
        tensor["parameters"] = {"binary_data_size": len(raw)}
    else:
        tensor["data"] = outputs.reshape(-1).tolist()
    head: dict[str, Any] = {"model_name": model_name, "outputs": [tensor]}
    if request_id is not None:
        head["id"] = request_id
    body = json.dumps(head, separators=(",", ":")).encode()
    if not binary:
        return body, {"Content-Type": "application/json"}
    return body + raw, {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(body)),
    }


def encode_infer_request(
    *, input_name: str, output_name: str, rows: NDArray[np.float32], request_id: str
) -> tuple[bytes, dict[str, str]]:
    """A binary inference request for ``rows`` (the OIP forwarder's)."""
    raw = np.ascontiguousarray(rows, dtype="<f4").tobytes()
    head = {
        "id": request_id,
        "inputs": [
            {
                "name": input_name,
                "shape": list(rows.shape),
                "datatype": _FP32,
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
    }
    body = json.dumps(head, separators=(",", ":")).encode()
    return body + raw, {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(body)),
    }


def decode_infer_response(
    body: bytes, header_length: int | None, *, output_name: str, rows: int
) -> NDArray[np.float32]:
    """The output tensor of a response to :func:`encode_infer_request` (``(rows, k)``).

    Raises :class:`ForwardError` (no retry: the server answered, wrongly) when it
    does not hold exactly that.
    """
    try:
        head = _json(body[:header_length] if header_length is not None else body)
        outputs = head.get("outputs")
        tensor = next(
            t for t in outputs or [] if isinstance(t, dict) and t.get("name") == output_name
        )
        shape = tensor.get("shape")
        if tensor.get("datatype") != _FP32 or not isinstance(shape, list) or len(shape) != 2:
            raise TensorError(f"output {output_name!r} is not FP32 [n, k]: {tensor!r}"[:300])
        if shape[0] != rows:
            raise TensorError(f"{shape[0]} output rows for {rows} input rows")
        size = _binary_size(tensor.get("parameters"))
        if size is not None and header_length is not None:
            data = memoryview(body)[header_length : header_length + size]
            result = np.frombuffer(data, dtype="<f4").reshape(shape)
        else:
            result = _json_rows(tensor.get("data"), shape, output_name)
    except (TensorError, StopIteration, ValueError) as exc:
        raise ForwardError(f"bad OIP response: {exc}", retry=False) from exc
    return result.astype(np.float32, copy=False)
