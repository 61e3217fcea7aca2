"""numpy arrays on the wire: a map of dtype, shape and the raw little-endian bytes.

Decoding is a read-only ``np.frombuffer`` view on the bytes msgpack produced
(no per-element work); encoding hands msgpack a memoryview of the array's own
buffer (no copy when it is already C-contiguous and of the wire dtype).
Every check a decoder makes is in :func:`array_shape`, so a receiver can
check an array without building it. ``docs/protocol.md``, section 4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import InvalidArray, LocalProtocolError

__all__ = [
    "ARRAY_DTYPES",
    "MAX_ACTION_DIM",
    "MAX_ARRAY_DIM",
    "array_shape",
    "array_view",
    "check_batch_shape",
    "decode_array",
    "encode_array",
    "wire_array",
]

MAX_ACTION_DIM = 1024
"""Largest k of observations (n, k) and actions (n, k)."""
MAX_ARRAY_DIM = 2**31 - 1
"""Largest single dimension of a decoded array."""
ARRAY_DTYPES: frozenset[str] = frozenset(
    {"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f4", "<f8"}
)
"""Every dtype string an array may declare."""

_NP_DTYPES = {code: np.dtype(code) for code in ARRAY_DTYPES}


def encode_array(arr: NDArray[Any], *, copy: bool = False) -> dict[str, Any]:
    """The wire map of ``arr``; ``data`` is a memoryview of the array's buffer, or its
    own ``bytes`` with ``copy`` (a map that outlives the array: recordings).

    Big-endian and non-contiguous arrays are converted (one copy); arrays of a
    dtype outside ``ARRAY_DTYPES`` raise ``LocalProtocolError``.
    """
    dtype = arr.dtype
    code = dtype.str
    if code not in ARRAY_DTYPES:
        if dtype.byteorder == ">":
            dtype = dtype.newbyteorder("<")
            code = dtype.str
        if code not in ARRAY_DTYPES:
            raise LocalProtocolError(f"dtype {arr.dtype.str!r} cannot travel as an array")
    if dtype is not arr.dtype or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    data = arr.data.cast("B") if arr.size else b""  # cast refuses empty shapes
    return {"dtype": code, "shape": list(arr.shape), "data": bytes(data) if copy else data}


def decode_array(obj: object, *, dtype: str, ndim: int) -> NDArray[Any]:
    """A read-only view of the array map ``obj``, which must be ``dtype`` with ``ndim`` dims.

    Raises ``InvalidArray`` for anything else.
    """
    array_shape(obj, dtype=dtype, ndim=ndim)
    return array_view(obj, dtype)  # type: ignore[arg-type]  # array_shape checked it is a map


def array_view(checked: dict[str, Any], dtype: str) -> NDArray[Any]:
    """The array of a map :func:`array_shape` accepted."""
    try:
        return np.frombuffer(checked["data"], dtype=_NP_DTYPES[dtype]).reshape(checked["shape"])
    except ValueError as exc:  # pragma: no cover - guarded by array_shape
        raise InvalidArray(str(exc)) from exc


def array_shape(obj: object, *, dtype: str, ndim: int) -> list[int]:
    """The shape of the array map ``obj`` after every check :func:`decode_array` makes,
    without building the array. Raises ``InvalidArray``."""
    if not isinstance(obj, dict):
        raise InvalidArray("array is not a map")
    declared = obj.get("dtype")
    shape = obj.get("shape")
    data = obj.get("data")
    if declared != dtype:
        if not isinstance(declared, str) or declared not in ARRAY_DTYPES:
            raise InvalidArray(f"unsupported array dtype {declared!r}")
        raise InvalidArray(f"array dtype {declared!r}, expected {dtype!r}")
    if not isinstance(shape, list) or len(shape) != ndim:
        raise InvalidArray(f"array shape must be a list of {ndim} integers")
    expected = _NP_DTYPES[dtype].itemsize
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= MAX_ARRAY_DIM:
            raise InvalidArray(f"bad array dimension {dim!r}")
        expected *= dim
    if not isinstance(data, bytes):
        raise InvalidArray("array data is not bin")
    if len(data) != expected:
        raise InvalidArray(f"array of shape {shape} needs {expected} bytes, got {len(data)}")
    return shape


def wire_array(arr: NDArray[Any], dtype: str, ndim: int, name: str) -> dict[str, Any]:
    """Encode a frame's array field, converting to its wire dtype when that is safe."""
    if (  # the common case: already the wire layout, sent as it is
        type(arr) is np.ndarray
        and arr.ndim == ndim
        and arr.dtype.str == dtype
        and arr.flags.c_contiguous
        and arr.size
    ):
        return {"dtype": dtype, "shape": list(arr.shape), "data": arr.data.cast("B")}
    arr = np.asarray(arr)
    if arr.ndim != ndim:
        raise LocalProtocolError(f"{name} must have {ndim} dimensions, has {arr.ndim}")
    if arr.dtype.str != dtype:
        if not np.can_cast(arr.dtype, np.dtype(dtype), "same_kind"):
            raise LocalProtocolError(f"{name} must be {dtype}, is {arr.dtype.str}")
        arr = arr.astype(dtype)
    return encode_array(arr)


def check_batch_shape(n: int, shapes: Mapping[str, Sequence[int]]) -> str | None:
    for name, shape in shapes.items():
        if shape[0] != n:
            return f"{name} has {shape[0]} rows, agent_ids has {n}"
        if len(shape) == 2 and not 1 <= shape[1] <= MAX_ACTION_DIM:
            return f"{name} has {shape[1]} columns, must be 1..{MAX_ACTION_DIM}"
    return None
