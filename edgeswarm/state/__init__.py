"""Shared swarm state: CRDT counters, sets and flags on pycrdt, sans-I/O.

``document`` holds the state, ``schema`` its layout and the convergence
argument, ``batch`` a writer's edits per interval, ``sync`` the sync with one
peer in bytes, ``session`` the same in the protocol's frames (the one
state-frame handler), ``store`` the state on disk.
"""

from edgeswarm.state.batch import UpdateBatcher
from edgeswarm.state.document import SwarmDocument, SwarmSnapshotDict
from edgeswarm.state.errors import (
    ForeignStateEntry,
    InvalidKey,
    LocalStateError,
    MalformedStateVector,
    MalformedUpdate,
    ReadOnlyState,
    RemoteStateError,
    StateError,
    StoreError,
    WriterReused,
)
from edgeswarm.state.ownership import WriteGuard, Writers
from edgeswarm.state.schema import client_id_for
from edgeswarm.state.session import StateFrame, StateSession
from edgeswarm.state.store import LoadReport, StateStore, StoreFsyncPolicy, open_document
from edgeswarm.state.sync import StateSync

__all__ = [
    "ForeignStateEntry",
    "InvalidKey",
    "LoadReport",
    "LocalStateError",
    "MalformedStateVector",
    "MalformedUpdate",
    "ReadOnlyState",
    "RemoteStateError",
    "StateError",
    "StateFrame",
    "StateSession",
    "StateStore",
    "StateSync",
    "StoreError",
    "StoreFsyncPolicy",
    "SwarmDocument",
    "SwarmSnapshotDict",
    "UpdateBatcher",
    "WriteGuard",
    "WriterReused",
    "Writers",
    "client_id_for",
    "open_document",
]
