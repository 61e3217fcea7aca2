"""Typed errors raised by the light-model layer (:mod:`edgeswarm.models`).

Hierarchy::

    ModelError                 base class for everything raised by edgeswarm.models
                               (an ``edgeswarm.errors.EdgeswarmError``)
    ├── ModelLoadError         file missing/unreadable, corrupt or truncated flatbuffer,
    │                          unsupported graph (not float32, not single 2-D in/out)
    ├── ModelNotFound          ModelRegistry has no model under the requested id
    └── ModelInputError        predict() input has the wrong type, dtype, rank or width

Callers that only care "did the model layer fail" catch :class:`ModelError`.
"""

from __future__ import annotations

from edgeswarm.errors import EdgeswarmError

__all__ = ["ModelError", "ModelInputError", "ModelLoadError", "ModelNotFound"]


class ModelError(EdgeswarmError):
    """Base class for all errors raised by :mod:`edgeswarm.models`."""


class ModelLoadError(ModelError):
    """A model could not be loaded: unreadable, corrupt, truncated or unsupported."""


class ModelNotFound(ModelError):  # noqa: N818 - name is part of the public API
    """No model is registered under the requested id."""

    def __init__(self, model_id: str) -> None:
        super().__init__(f"no model registered under id {model_id!r}")
        self.model_id = model_id


class ModelInputError(ModelError):
    """The input passed to ``predict`` has the wrong type, dtype or shape."""
