"""LiteRT (TFLite) interpreter wrapper and a registry of loaded models.

:class:`LiteRTModel` owns one ``ai_edge_litert`` ``Interpreter`` for a float32 model with a
single 2-D input ``(batch, in)`` and a single 2-D output ``(batch, out)``. ``predict`` runs a
whole batch in one ``invoke``; the input tensor is resized (and tensors re-allocated) only
when the batch size differs from the previous call. An interpreter is not re-entrant, so
each model serializes its calls with a lock.

:class:`ModelRegistry` maps string ids to models.

Every failure surfaces as a :class:`~edgeswarm.models.errors.ModelError` subclass; corrupt or
truncated files give :class:`~edgeswarm.models.errors.ModelLoadError`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Final

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter
from numpy.typing import NDArray

from edgeswarm.models.errors import ModelError, ModelInputError, ModelLoadError, ModelNotFound
from edgeswarm.resource import Resource

__all__ = ["LiteRTModel", "ModelRegistry"]

_MIN_FLATBUFFER_LEN: Final = 8  # root offset (4) + file identifier (4)
_INTERPRETER_ERRORS: Final = (ValueError, RuntimeError, TypeError, IndexError, KeyError)


def _preflight(content: bytes, name: str) -> None:
    """Structural checks the native loader does not do (it can segfault on them).

    LiteRT's flatbuffer verifier only proves the bytes are a well-formed ``Model`` table;
    a bit-flipped vtable can yield a "valid" model with no subgraphs, which crashes the
    interpreter constructor. The Python bindings bounds-check every read, so walking the
    graph here turns such files into :class:`ModelLoadError` instead of a dead process.
    """
    if len(content) < _MIN_FLATBUFFER_LEN:
        raise ModelLoadError(f"{name}: {len(content)} bytes is too short for a model")
    if not schema.Model.ModelBufferHasIdentifier(content, 0):
        raise ModelLoadError(f"{name}: missing TFL3 file identifier; not a .tflite model")
    try:
        model: Any = schema.Model.GetRootAs(content, 0)
        n_codes = int(model.OperatorCodesLength())
        n_buffers = int(model.BuffersLength())
        n_subgraphs = int(model.SubgraphsLength())
        if n_subgraphs < 1:
            raise ModelLoadError(f"{name}: model has no subgraphs")
        for g in range(n_subgraphs):
            sg = model.Subgraphs(g)
            n_tensors = int(sg.TensorsLength())
            for t_i in range(n_tensors):
                t = sg.Tensors(t_i)
                buf_i = int(t.Buffer())
                if buf_i >= n_buffers:
                    raise ModelLoadError(f"{name}: tensor {t_i} references missing buffer {buf_i}")
                shape = [int(d) for d in t.ShapeAsNumpy()] if not t.ShapeIsNone() else []
                if any(d < 0 for d in shape):
                    raise ModelLoadError(f"{name}: tensor {t_i} has negative dimension {shape}")
                data_len = int(model.Buffers(buf_i).DataLength())
                if data_len and int(t.Type()) == schema.TensorType.FLOAT32:
                    expected = 4 * int(np.prod(shape, dtype=np.int64))
                    if data_len != expected:
                        raise ModelLoadError(
                            f"{name}: tensor {t_i} holds {data_len} bytes, shape needs {expected}"
                        )
            if g == 0 and (sg.InputsLength() < 1 or sg.OutputsLength() < 1):
                raise ModelLoadError(f"{name}: main subgraph has no inputs or outputs")
            io = (
                [*sg.InputsAsNumpy().tolist(), *sg.OutputsAsNumpy().tolist()]
                if not (sg.InputsIsNone() or sg.OutputsIsNone())
                else []
            )
            for idx in io:
                if not 0 <= int(idx) < n_tensors:
                    raise ModelLoadError(f"{name}: subgraph {g} io tensor {idx} out of range")
            _check_dataflow(model, sg, g, n_codes, n_tensors, io, name)
    except ModelLoadError:
        raise
    except Exception as exc:  # bounds-checked reads of a corrupt buffer: struct/Index errors
        raise ModelLoadError(f"{name}: corrupt flatbuffer: {exc!r}") from exc


def _check_dataflow(
    model: Any, sg: Any, g: int, n_codes: int, n_tensors: int, io: list[int], name: str
) -> None:
    """Each op reads defined tensors and writes fresh ones; every output gets produced.

    An op writing its own input (or a graph output nobody writes) loads "fine" and then
    corrupts the heap (``double free``) inside the native runtime.
    """
    n_inputs = int(sg.InputsLength())
    defined: set[int] = set(int(i) for i in io[:n_inputs])
    for t_i in range(n_tensors):
        t = sg.Tensors(t_i)
        if t.IsVariable() or int(model.Buffers(int(t.Buffer())).DataLength()) > 0:
            defined.add(t_i)
    for o_i in range(int(sg.OperatorsLength())):
        op = sg.Operators(o_i)
        if not 0 <= int(op.OpcodeIndex()) < n_codes:
            raise ModelLoadError(f"{name}: subgraph {g} operator {o_i} has bad opcode index")
        ins = [] if op.InputsIsNone() else [int(i) for i in op.InputsAsNumpy().tolist()]
        outs = [] if op.OutputsIsNone() else [int(i) for i in op.OutputsAsNumpy().tolist()]
        for idx in ins:
            if idx != -1 and (not 0 <= idx < n_tensors or idx not in defined):
                raise ModelLoadError(
                    f"{name}: subgraph {g} operator {o_i} reads undefined tensor {idx}"
                )
        for idx in outs:
            if not 0 <= idx < n_tensors or idx in defined:
                raise ModelLoadError(
                    f"{name}: subgraph {g} operator {o_i} writes invalid tensor {idx}"
                )
            defined.add(idx)
    for idx in io[n_inputs:]:
        if idx not in defined:
            raise ModelLoadError(f"{name}: subgraph {g} output tensor {idx} is never produced")


class LiteRTModel(Resource):
    """A loaded float32 ``(batch, in) -> (batch, out)`` LiteRT model."""

    def __init__(
        self, content: bytes, *, num_threads: int | None = None, name: str = "<bytes>"
    ) -> None:
        """Load a model from flatbuffer bytes; prefer :meth:`from_bytes` / :meth:`from_path`.

        Raises:
            ModelLoadError: the bytes are not a loadable float32 single-input/output model.
            ValueError: ``num_threads`` is < 1.
        """
        if num_threads is not None and num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        self.name = name
        self.num_threads = num_threads
        self._lock = threading.Lock()
        self._content = bytes(content)  # the interpreter references, not copies, the buffer
        _preflight(self._content, name)
        try:
            interp: Any = Interpreter(model_content=self._content, num_threads=num_threads)
            interp.allocate_tensors()
            inputs = interp.get_input_details()
            outputs = interp.get_output_details()
        except _INTERPRETER_ERRORS as exc:
            raise ModelLoadError(f"{name}: cannot load model: {exc}") from exc
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelLoadError(
                f"{name}: expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}"
            )
        inp, out = inputs[0], outputs[0]
        for kind, det in (("input", inp), ("output", out)):
            if np.dtype(det["dtype"]) != np.float32:
                raise ModelLoadError(
                    f"{name}: {kind} dtype is {np.dtype(det['dtype'])}, not float32"
                )
            if len(det["shape"]) != 2:
                raise ModelLoadError(f"{name}: {kind} must be 2-D, got shape {list(det['shape'])}")
        self._interp: Any | None = interp
        self._in_index: int = int(inp["index"])
        self._out_index: int = int(out["index"])
        self.input_dim: int = int(inp["shape"][1])
        self.output_dim: int = int(out["shape"][1])
        self._batch: int = int(inp["shape"][0])

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_bytes(cls, content: bytes, *, num_threads: int | None = None) -> LiteRTModel:
        """Load from in-memory ``.tflite`` bytes."""
        return cls(content, num_threads=num_threads)

    @classmethod
    def from_path(
        cls, path: str | os.PathLike[str], *, num_threads: int | None = None
    ) -> LiteRTModel:
        """Load from a ``.tflite`` file; unreadable files raise :class:`ModelLoadError`."""
        p = Path(path)
        try:
            content = p.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"{p}: cannot read model file: {exc}") from exc
        return cls(content, num_threads=num_threads, name=str(p))

    # -- inference --------------------------------------------------------------------

    def _check_input(self, x: object) -> NDArray[np.float32]:
        if not isinstance(x, np.ndarray):
            raise ModelInputError(f"{self.name}: input must be a numpy array, got {type(x)!r}")
        if x.dtype != np.float32:
            raise ModelInputError(f"{self.name}: input dtype must be float32, got {x.dtype}")
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise ModelInputError(
                f"{self.name}: input shape must be (n, {self.input_dim}), got {x.shape}"
            )
        if x.shape[0] < 1:
            raise ModelInputError(f"{self.name}: input batch must be non-empty")
        return np.ascontiguousarray(x)

    def predict(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """Run ``x`` of shape ``(n, input_dim)`` through the model in one invoke.

        Returns:
            A new ``(n, output_dim)`` float32 array (a copy, not a view of interpreter memory).

        Raises:
            ModelInputError: ``x`` is not a 2-D float32 array with ``input_dim`` columns.
            ModelError: the model is closed or the interpreter failed.
        """
        arr = self._check_input(x)
        n = int(arr.shape[0])
        with self._lock:
            interp = self._interp
            if interp is None:
                raise ModelError(f"{self.name}: model is closed")
            try:
                if n != self._batch:
                    interp.resize_tensor_input(self._in_index, [n, self.input_dim], strict=False)
                    interp.allocate_tensors()
                    self._batch = n
                interp.set_tensor(self._in_index, arr)
                interp.invoke()
                out = interp.get_tensor(self._out_index)  # get_tensor returns a copy
            except _INTERPRETER_ERRORS as exc:
                self._batch = -1  # force a resize + re-allocation on the next call
                raise ModelError(f"{self.name}: inference failed: {exc}") from exc
        result: NDArray[np.float32] = np.asarray(out, dtype=np.float32)
        if result.shape != (n, self.output_dim):
            raise ModelError(
                f"{self.name}: output shape {result.shape} != ({n}, {self.output_dim})"
            )
        return result

    # -- lifecycle --------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._interp is None

    def close(self) -> None:
        """Release the interpreter; further ``predict`` calls raise :class:`ModelError`."""
        with self._lock:
            self._interp = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.input_dim}->{self.output_dim}"
        return f"LiteRTModel({self.name!r}, {state})"


class ModelRegistry(Resource):
    """Thread-safe map of string ids to :class:`LiteRTModel` instances it owns."""

    def __init__(self, *, num_threads: int | None = None) -> None:
        self._num_threads = num_threads
        self._models: dict[str, LiteRTModel] = {}
        self._lock = threading.Lock()

    def _put(self, model_id: str, model: LiteRTModel, replace: bool) -> LiteRTModel:
        with self._lock:
            old = self._models.get(model_id)
            if old is not None and not replace:
                model.close()
                raise ValueError(f"model id {model_id!r} is already registered")
            self._models[model_id] = model
        if old is not None:
            old.close()
        return model

    def register_path(
        self, model_id: str, path: str | os.PathLike[str], *, replace: bool = False
    ) -> LiteRTModel:
        """Load ``path`` and register it under ``model_id``.

        Raises:
            ModelLoadError: the file cannot be loaded.
            ValueError: ``model_id`` is taken and ``replace`` is false.
        """
        return self._put(
            model_id, LiteRTModel.from_path(path, num_threads=self._num_threads), replace
        )

    def register_bytes(
        self, model_id: str, content: bytes, *, replace: bool = False
    ) -> LiteRTModel:
        """Load ``content`` and register it under ``model_id`` (same errors as register_path)."""
        return self._put(
            model_id, LiteRTModel.from_bytes(content, num_threads=self._num_threads), replace
        )

    def get(self, model_id: str) -> LiteRTModel:
        """Return the model, or raise :class:`ModelNotFound`."""
        with self._lock:
            model = self._models.get(model_id)
        if model is None:
            raise ModelNotFound(model_id)
        return model

    def predict(self, model_id: str, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``get(model_id).predict(x)``."""
        return self.get(model_id).predict(x)

    def unregister(self, model_id: str) -> None:
        """Close and remove a model; raises :class:`ModelNotFound` if absent."""
        with self._lock:
            model = self._models.pop(model_id, None)
        if model is None:
            raise ModelNotFound(model_id)
        model.close()

    def ids(self) -> list[str]:
        """Registered ids, sorted."""
        with self._lock:
            return sorted(self._models)

    def __contains__(self, model_id: object) -> bool:
        with self._lock:
            return model_id in self._models

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def close(self) -> None:
        """Close every model and empty the registry."""
        with self._lock:
            models = list(self._models.values())
            self._models.clear()
        for m in models:
            m.close()
