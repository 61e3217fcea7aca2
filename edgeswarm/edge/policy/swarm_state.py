"""Swarm-wide shared state as policies see it: counters, sets and flags.

:class:`SwarmState` is the seam. Policies reach it through the ``"es"``
imports ``counter_add``, ``set_add`` and ``flag_get`` (only for the keys
their descriptor declares; the host checks that, not the state). The edge
itself sets flags (e.g. from gateway commands) with ``flag_set`` and
publishes ``snapshot()``.

:class:`LocalSwarmState` keeps everything in process memory; it is the
implementation for one edge alone and for unit tests. The edge runner uses
:class:`~edgeswarm.edge.state_link.DocumentSwarmState`, a CRDT document
(pycrdt) synced with the gateway, so that edges share the state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SwarmSnapshot:
    """A copy of the shared state at one moment."""

    counters: dict[str, int] = field(default_factory=dict)
    """Counter values by key (missing keys are 0)."""
    sets: dict[str, frozenset[str]] = field(default_factory=dict)
    """Set members by key (missing keys are empty)."""
    flags: dict[str, bool] = field(default_factory=dict)
    """Flag values by key (missing keys are unset)."""


class SwarmState(Protocol):
    """Shared counters (grow by deltas), grow-only sets and boolean flags."""

    def counter_add(self, key: str, delta: int) -> None:
        """Add ``delta`` (may be negative) to counter ``key``."""
        ...

    def set_add(self, key: str, item: str) -> None:
        """Add ``item`` to set ``key``."""
        ...

    def flag_get(self, key: str) -> bool:
        """Whether flag ``key`` is set."""
        ...

    def flag_set(self, key: str, value: bool) -> None:
        """Set or clear flag ``key``."""
        ...

    def snapshot(self) -> SwarmSnapshot:
        """Copy of everything."""
        ...


class LocalSwarmState:
    """In-memory :class:`SwarmState`, safe to share between threads."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._sets: dict[str, set[str]] = {}
        self._flags: dict[str, bool] = {}
        self._lock = threading.Lock()

    def counter_add(self, key: str, delta: int) -> None:
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + delta

    def set_add(self, key: str, item: str) -> None:
        with self._lock:
            self._sets.setdefault(key, set()).add(item)

    def flag_get(self, key: str) -> bool:
        with self._lock:
            return self._flags.get(key, False)

    def flag_set(self, key: str, value: bool) -> None:
        with self._lock:
            self._flags[key] = value

    def snapshot(self) -> SwarmSnapshot:
        with self._lock:
            return SwarmSnapshot(
                counters=dict(self._counters),
                sets={key: frozenset(items) for key, items in self._sets.items()},
                flags=dict(self._flags),
            )
