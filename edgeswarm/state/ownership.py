"""Who may write what in the swarm document: an update is checked by its effect before
it is merged.

The layout (``schema.py``) gives every counter and set entry one owner, the
writer whose id is in its name: ``<writer>+``/``<writer>-`` of a counter,
``+<adder><item>`` of a set add (owned by the adder), ``-<adder><remover>
<item>`` of a tombstone (owned by the remover). Flags are shared registers
that every writer may set. A peer's writers are the client ids bound to it
(the gateway derives them from the peer's enrolled id and the incarnations it
announced: ``schema.client_id_for``).

:class:`WriteGuard` keeps a *shadow* copy of the document, merges a peer's
update into the shadow first and looks at what changed, so the check is
sound whatever the bytes say:

1. the update must integrate completely: nothing left pending (items whose
   dependencies are missing, deletions of items not there yet), because
   pending parts would land later, unchecked;
2. every client whose clock advanced must be one of the peer's writers (a
   peer cannot spend another writer's clock range, in any root);
3. every changed entry of a counter or set must be owned by one of the
   peer's writers, keep a non-negative number, and never disappear; a flag
   must stay a boolean; no other root may change;
4. a peer whose role may only read (``writers`` empty and ``may_write``
   false) may send updates that change nothing (echoes), nothing else.

A refused update raises :class:`~edgeswarm.state.errors.ForeignStateEntry`
or :class:`~edgeswarm.state.errors.ReadOnlyState` (error codes 103, 104); the
shadow is rebuilt from the document, which never saw the update. Accepted
updates are merged into the document by the caller (the same effect).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map, get_update

from edgeswarm.state import schema
from edgeswarm.state.document import SwarmDocument
from edgeswarm.state.errors import ForeignStateEntry, MalformedUpdate, ReadOnlyState
from edgeswarm.state.vector import _varuints, decode_state_vector

__all__ = ["WriteGuard", "Writers"]

Writers = frozenset[int] | None
"""Client ids a peer may write as; None: any (a peer gateway replicating everything)."""

Change = tuple[str, str, str, Any]
"""(root, entry, action, new value) of one changed entry."""


class WriteGuard:
    """Checks peers' updates against a shadow of ``document`` before they are merged."""

    def __init__(self, document: SwarmDocument) -> None:
        self.document = document
        self._shadow: Doc[Any] = Doc()
        self._observed: set[str] = set()
        self._subscriptions: list[Any] = []
        """pycrdt drops an observer whose subscription is garbage-collected."""
        self._changes: list[Change] = []
        self._state: dict[int, int] = {}
        """The shadow's state vector after the last check."""
        self._rebuild()

    def check(self, update: bytes, *, writers: Writers, may_write: bool) -> None:
        """Raise if ``update`` writes what the peer does not own (module docstring)."""
        before = self._catch_up()
        self._changes.clear()
        try:
            self._shadow.apply_update(update)
        except ValueError as exc:
            raise MalformedUpdate(str(exc)) from exc
        try:
            changes = self._changes + self._new_roots(update)
            after = decode_state_vector(self._shadow.get_state())
            problem = self._problem(update, before, after, changes, writers)
            if problem is not None and not may_write and changes:
                raise ReadOnlyState(f"this role may only read the swarm state ({problem})")
            if problem is not None:
                raise ForeignStateEntry(problem)
            if changes and not may_write:
                raise ReadOnlyState("this role may only read the swarm state")
        except BaseException:
            self._rebuild()  # the document never saw it: forget it here too
            raise
        finally:
            self._changes.clear()
        self._state = after

    # --- the effect of an update --------------------------------------------------------

    def _problem(
        self,
        update: bytes,
        before: dict[int, int],
        after: dict[int, int],
        changes: list[Change],
        writers: Writers,
    ) -> str | None:
        pending = _pending(update, self._shadow.get_state(), after)
        if pending is not None:
            return pending
        if writers is None:
            return None
        for client, clock in after.items():
            if clock > before.get(client, 0) and client not in writers:
                return f"writes as client {client}, not a writer of this peer"
        names = {schema.writer_name(client) for client in writers}
        for root, entry, action, value in changes:
            problem = _entry_problem(root, entry, action, value, names)
            if problem is not None:
                return problem
        return None

    def _new_roots(self, update: bytes) -> list[Change]:
        """Roots the update created: every entry in them is a change.

        A root the update creates is named in it (its first items have no
        origin to inherit a parent from), so merging the update alone into an
        empty scratch document lists every candidate, at the cost of the update's
        size rather than the document's.
        """
        scratch: Doc[Any] = Doc()
        scratch.apply_update(update)
        changes: list[Change] = []
        for name in set(scratch.keys()) - self._observed:
            try:
                root = self._shadow.get(name, type=Map)
            except Exception:  # a root of another shared type
                changes.append((name, "", "add", None))
                continue
            changes.extend((name, key, "add", root.get(key)) for key in root)
            self._observe(name)
        return changes

    # --- the shadow ---------------------------------------------------------------------

    def _rebuild(self) -> None:
        self._shadow = Doc()
        self._observed = set()
        self._subscriptions = []
        self._shadow.apply_update(self.document.encode_update())
        for name in list(self._shadow.keys()):
            self._observe(name)
        self._state = decode_state_vector(self._shadow.get_state())

    def _catch_up(self) -> dict[int, int]:
        """Merge into the shadow what the document got since the last check (its own
        writes, updates merged without a check); the shadow's state vector."""
        ours = decode_state_vector(self.document.state_vector())
        if ours != self._state:
            self._shadow.apply_update(self.document.encode_update(self._shadow.get_state()))
            for name in set(self._shadow.keys()) - self._observed:
                self._observe(name)
            self._state = decode_state_vector(self._shadow.get_state())
        return self._state

    def _observe(self, name: str) -> None:
        try:
            root = self._shadow.get(name, type=Map)
        except Exception:  # not a map: nothing of ours
            return
        # The library's own event type (``integrated``): pycrdt's MapEvent wrapper costs
        # ~20 us an event, the raw event carries the same ``keys``.
        self._subscriptions.append(root.integrated.observe(self._recorder(name)))
        self._observed.add(name)

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(event: Any) -> None:
            keys: dict[str, dict[str, Any]] = event.keys
            for key, change in keys.items():
                self._changes.append((name, key, change["action"], change.get("newValue")))

        return record


def _pending(update: bytes, state: bytes, after: dict[int, int]) -> str | None:
    """Why part of ``update`` did not integrate (and would land later), or None."""
    rest = _varuints(get_update(update, state))  # no structs left, then the delete set
    if not rest or rest[0] != 0:
        return "parts of the update depend on items the receiver lacks"
    position, clients = 2, rest[1] if len(rest) > 1 else 0
    for _ in range(clients):
        client, ranges = rest[position], rest[position + 1]
        position += 2
        for _ in range(ranges):
            clock, length = rest[position], rest[position + 1]
            position += 2
            if clock + length > after.get(client, 0):
                return f"deletes items of client {client} the receiver does not hold"
    return None


def _entry_problem(root: str, entry: str, action: str, value: Any, names: set[str]) -> str | None:
    """Why changing ``entry`` of ``root`` this way is not the peer's to do, or None."""
    kind = schema.kind_of_root(root)
    if root == schema.FLAGS_ROOT:
        if action == "delete" or not isinstance(value, bool):
            return f"flag {entry!r} must stay a boolean"
        return None
    if kind is None:
        return f"root {root!r} is not part of the swarm state"
    if action == "delete":
        return f"entry {entry!r} of {root!r} may not be removed"
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        return f"entry {entry!r} of {root!r} must hold a non-negative number"
    w = schema.WRITER_HEX
    if kind[0] == "counter":
        owner = entry[:w] if len(entry) == w + 1 and entry[-1] in "+-" else None
    elif entry[:1] == "+":
        owner = entry[1 : 1 + w]
    elif entry[:1] == "-":
        owner = entry[1 + w : 1 + 2 * w]
    else:
        owner = None
    if owner not in names:
        return f"entry {entry!r} of {root!r} belongs to another writer"
    return None
