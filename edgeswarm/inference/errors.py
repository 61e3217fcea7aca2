"""Typed errors of the heavy inference lane (:mod:`edgeswarm.inference`).

Hierarchy::

    InferenceError              base (an ``edgeswarm.errors.EdgeswarmError``)
    ├── ModelUnavailableError   a model file cannot be served: unreadable, not ONNX nor
    │                           .tflite, not one float32 (batch, k) input and output, or
    │                           the device asked for (``--device cuda``) is not there
    ├── TensorError             an inference request's tensors are wrong: name, datatype,
    │                           shape, byte length, too many rows (OIP answers 400)
    ├── NodeOverloadedError     more calls wait at an inference node than it takes
    │                           (``max_pending``): OIP 503, INFER_RESULT ``REJECTED``
    └── ForwardError            a forwarder could not get a batch answered: the node
                                failed, timed out, refused it or is gone (the batch is
                                retried on another node while attempts and time are left)

A :class:`TensorError` is the caller's fault and is answered with an error (OIP
400, INFER_RESULT ``FAILED``); the node keeps serving everyone else.
"""

from __future__ import annotations

from edgeswarm.errors import EdgeswarmError

__all__ = [
    "ForwardError",
    "InferenceError",
    "ModelUnavailableError",
    "NodeOverloadedError",
    "TensorError",
]


class InferenceError(EdgeswarmError):
    """Base class of everything :mod:`edgeswarm.inference` raises on purpose."""


class ModelUnavailableError(InferenceError):
    """A model cannot be loaded or served on the device asked for."""


class TensorError(InferenceError):
    """The tensors of an inference request do not fit the model or the protocol."""


class NodeOverloadedError(InferenceError):
    """More calls wait than the node takes: try later or elsewhere."""


class ForwardError(InferenceError):
    """A batch could not be answered by the node (or OIP server) it was sent to."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry
        """Whether another node might answer it (False: the batch itself is at fault)."""
