# ruff: noqa: N818  (names without the Error suffix are public API; they read as h11's do)
"""Errors of the shared swarm state, one tree, each with a ``wire.ErrorCode``.

::

    StateError                      error_code (StateError: an EdgeswarmError)
    ├── RemoteStateError            (the peer sent something we refuse)
    │   ├── MalformedUpdate         101  update bytes do not decode; document untouched
    │   ├── MalformedStateVector    102  state-vector bytes do not decode
    │   ├── ForeignStateEntry       103  an update writes what its peer does not own
    │   └── ReadOnlyState           104  an update that changes something, from a read-only role
    └── LocalStateError             (we, or our caller, did something wrong)
        ├── InvalidKey              110  key is not "group/name" or an item is not a str
        ├── WriterReused            111  a peer holds more of our writer's history than we do
        └── StoreError              120  the store directory cannot be used

Errors the peer caused (:class:`RemoteStateError`) are caught at the protocol
boundary and become an ERROR frame carrying ``error_code``; the connection and
the document stay up. :class:`WriterReused` means a process restarted without
its persisted state and kept its client id: it must restart with a new
incarnation (see :func:`edgeswarm.state.schema.client_id_for`).
"""

from __future__ import annotations

from edgeswarm.errors import EdgeswarmError
from edgeswarm.wire.errors import ErrorCode

__all__ = [
    "ForeignStateEntry",
    "InvalidKey",
    "LocalStateError",
    "MalformedStateVector",
    "MalformedUpdate",
    "ReadOnlyState",
    "RemoteStateError",
    "StateError",
    "StoreError",
    "WriterReused",
]


class StateError(EdgeswarmError):
    """Base of every error of :mod:`edgeswarm.state`."""

    error_code: ErrorCode = ErrorCode.STATE_ERROR
    """Its :class:`~edgeswarm.wire.ErrorCode`: what an ERROR frame about it carries."""


class RemoteStateError(StateError):
    """The peer sent bytes we refuse; our document is unchanged."""


class MalformedUpdate(RemoteStateError):
    """An update does not decode as a Yrs v1 update; nothing was applied."""

    error_code = ErrorCode.MALFORMED_UPDATE


class MalformedStateVector(RemoteStateError):
    """A state vector does not decode."""

    error_code = ErrorCode.MALFORMED_STATE_VECTOR


class ForeignStateEntry(RemoteStateError):
    """An update writes an entry, or as a writer id, not bound to the peer that sent it
    (``ownership.py``); nothing of it was merged."""

    error_code = ErrorCode.FOREIGN_STATE_ENTRY


class ReadOnlyState(RemoteStateError):
    """An update that would change the document, from a role that may only read."""

    error_code = ErrorCode.STATE_READ_ONLY


class LocalStateError(StateError):
    """Misuse on our side."""


class InvalidKey(LocalStateError):
    """A state key is not ``"group/name"``, or a set item is not a non-empty str."""

    error_code = ErrorCode.INVALID_STATE_KEY


class WriterReused(LocalStateError):
    """A peer has seen more updates of our client id than we hold.

    Writing on would reuse (client id, clock) pairs that the swarm already
    knows, and those writes would be silently ignored everywhere.
    """

    error_code = ErrorCode.WRITER_REUSED


class StoreError(LocalStateError):
    """The store directory or its snapshot cannot be used."""

    error_code = ErrorCode.STATE_STORE_ERROR
