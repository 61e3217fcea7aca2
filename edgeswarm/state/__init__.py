"""Shared swarm state: CRDT counters, sets and flags on pycrdt, sans-I/O.

Layout and convergence argument: :mod:`edgeswarm.state.schema`.
"""

from edgeswarm.state.batch import UpdateBatcher
from edgeswarm.state.document import SwarmDocument, SwarmSnapshotDict
from edgeswarm.state.errors import (
    InvalidKey,
    LocalStateError,
    MalformedStateVector,
    MalformedUpdate,
    RemoteStateError,
    StateError,
    StoreError,
    WriterReused,
)
from edgeswarm.state.schema import client_id_for
from edgeswarm.state.store import FsyncPolicy, LoadReport, StateStore, open_document
from edgeswarm.state.sync import StateSync

__all__ = [
    "FsyncPolicy",
    "InvalidKey",
    "LoadReport",
    "LocalStateError",
    "MalformedStateVector",
    "MalformedUpdate",
    "RemoteStateError",
    "StateError",
    "StateStore",
    "StateSync",
    "StoreError",
    "SwarmDocument",
    "SwarmSnapshotDict",
    "UpdateBatcher",
    "WriterReused",
    "client_id_for",
    "open_document",
]
