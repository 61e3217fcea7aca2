"""Swarm-wide shared state as policies see it: counters, sets and flags.

:class:`SwarmState` is the seam. Policies reach it through the ``"es"``
imports ``counter_add``, ``set_add`` and ``flag_get`` (only for the keys
their descriptor declares; the host checks that, not the state). The edge
itself sets flags (e.g. from gateway commands) with ``flag_set`` and
publishes ``snapshot()``.

What the shared document accepts, in one place (ABI.md, "Shared state"):
a key is ``name`` or ``group/name`` (:func:`key_problem`; ``name`` alone is
put in the edge's default group), an item is non-empty text
(:func:`item_problem`). Descriptors declaring another key are refused at
load, and an implementation refuses anything else by raising
:class:`SwarmStateRefusedError`, which the host import turns into an error code
for the guest: an update is never reported done and then dropped.

:class:`LocalSwarmState` keeps everything in process memory; it is the
implementation for one edge alone and for unit tests. The edge runner uses
:class:`~edgeswarm.edge.state_link.DocumentSwarmState`, a CRDT document
(pycrdt) synced with the gateway, so that edges share the state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal, Protocol

from edgeswarm.state.errors import InvalidKey
from edgeswarm.state.schema import check_item, check_key


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot name shared state (None if it can).

    A key is ``name`` or ``group/name``, as :func:`edgeswarm.state.schema.check_key`
    says (``[A-Za-z0-9_.:-]``; a ``name`` alone goes in the edge's default group).
    """
    try:
        check_key(key if "/" in key else f"group/{key}")
    except InvalidKey:
        return (
            f"shared-state keys are 'name' or 'group/name' made of A-Z a-z 0-9 _ . : -, got {key!r}"
        )
    return None


def item_problem(item: str) -> str | None:
    """Why ``item`` cannot be a set member (None if it can), as the document says."""
    try:
        check_item(item)
    except InvalidKey as exc:
        return str(exc)
    return None


class SwarmStateRefusedError(InvalidKey):
    """The shared state refused a key or an item; nothing was changed.

    An :class:`~edgeswarm.state.errors.InvalidKey` that says which part was refused.
    """

    def __init__(self, message: str, *, part: Literal["key", "item"]) -> None:
        super().__init__(message)
        self.part: Literal["key", "item"] = part
        """What was refused."""


def check_update(key: str, item: str | None = None) -> None:
    """Raise :class:`SwarmStateRefusedError` for a key (and item) the shared document refuses."""
    problem = key_problem(key)
    if problem is not None:
        raise SwarmStateRefusedError(problem, part="key")
    if item is not None:
        problem = item_problem(item)
        if problem is not None:
            raise SwarmStateRefusedError(problem, part="item")


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
        """Add ``delta`` (may be negative) to counter ``key``; :class:`SwarmStateRefusedError`
        if the key is refused."""
        ...

    def set_add(self, key: str, item: str) -> None:
        """Add ``item`` to set ``key``; :class:`SwarmStateRefusedError` if either is refused."""
        ...

    def flag_get(self, key: str) -> bool:
        """Whether flag ``key`` is set; :class:`SwarmStateRefusedError` if the key is refused."""
        ...

    def flag_set(self, key: str, value: bool) -> None:
        """Set or clear flag ``key``."""
        ...

    def snapshot(self) -> SwarmSnapshot:
        """Copy of everything."""
        ...


class LocalSwarmState:
    """In-memory :class:`SwarmState`, safe to share between threads; refuses what the
    shared document refuses (:func:`check_update`)."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}
        self._sets: dict[str, set[str]] = {}
        self._flags: dict[str, bool] = {}
        self._lock = threading.Lock()

    def counter_add(self, key: str, delta: int) -> None:
        check_update(key)
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + delta

    def set_add(self, key: str, item: str) -> None:
        check_update(key, item)
        with self._lock:
            self._sets.setdefault(key, set()).add(item)

    def flag_get(self, key: str) -> bool:
        check_update(key)
        with self._lock:
            return self._flags.get(key, False)

    def flag_set(self, key: str, value: bool) -> None:
        check_update(key)
        with self._lock:
            self._flags[key] = value

    def snapshot(self) -> SwarmSnapshot:
        with self._lock:
            return SwarmSnapshot(
                counters=dict(self._counters),
                sets={key: frozenset(items) for key, items in self._sets.items()},
                flags=dict(self._flags),
            )
