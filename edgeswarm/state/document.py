"""`SwarmDocument`: counters, observed-remove sets and flags on one pycrdt Doc.

The layout and the reasons it converges are in :mod:`edgeswarm.state.schema`.
The document is sans-I/O: it changes only through its own methods and
:meth:`SwarmDocument.apply_update`, and hands bytes out through
:meth:`~SwarmDocument.encode_update` (or an
:class:`~edgeswarm.state.batch.UpdateBatcher` /
:class:`~edgeswarm.state.sync.StateSync` built on it).

It is meant for one thread (the event loop of its process), like the pycrdt
Doc it wraps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pycrdt import Doc, Map

from edgeswarm.state import schema
from edgeswarm.state.errors import InvalidKey, MalformedUpdate

__all__ = ["SwarmDocument", "SwarmSnapshotDict"]

SwarmSnapshotDict = dict[str, dict[str, Any]]
"""``{"counters": {key: int}, "sets": {key: sorted list of str}, "flags": {key: bool}}``."""


class SwarmDocument:
    """Shared swarm state of one writer (an edge or a gateway).

    Satisfies the Wasm host's state seam by duck typing: ``counter_add``,
    ``set_add``, ``flag_get``, ``flag_set`` and ``snapshot``.
    """

    def __init__(
        self, writer_id: str, *, incarnation: int = 0, client_id: int | None = None
    ) -> None:
        """``writer_id`` is the edge/gateway id; see :func:`schema.client_id_for`
        for when ``incarnation`` must change. ``client_id`` overrides both."""
        self.writer_id = writer_id
        """Edge or gateway id this document writes as."""
        self.incarnation = incarnation
        """The incarnation the client id was derived from (HELLO ``state_incarnation``)."""
        self.client_id = (
            client_id if client_id is not None else schema.client_id_for(writer_id, incarnation)
        )
        """pycrdt client id of this writer."""
        self._writer = schema.writer_name(self.client_id)
        self._doc: Doc[Any] = Doc(client_id=self.client_id)
        self._maps: dict[str, Map[Any]] = {}
        self._pending: dict[tuple[str, str], int] = {}
        """Counter amounts added inside :meth:`batch`, written once when it ends."""
        self._batch_depth = 0
        self._own: dict[tuple[str, str], int] = {}
        """Our own entries' values (only we write them; cleared when updates arrive)."""
        self._live_adds: dict[str, dict[str, dict[str, int]]] = {}
        """Per set root: item -> {adder: tag} of adds no tombstone covers (a cache)."""

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def doc(self) -> Doc[Any]:
        """The wrapped pycrdt document (read it; write through this class)."""
        return self._doc

    def _map(self, root: str) -> Map[Any]:
        found = self._maps.get(root)
        if found is None:
            found = self._maps[root] = self._doc.get(root, type=Map)
        return found

    def _entries(self, root: str) -> dict[str, Any]:
        """All entries of a root map, decoded in Rust (much faster than ``to_py``)."""
        decoded = json.loads(str(self._map(root)))
        return decoded if isinstance(decoded, dict) else {}

    def _own_value(self, root: str, entry: str) -> int:
        slot = (root, entry)
        value = self._own.get(slot)
        if value is None:
            stored = self._map(root).get(entry, 0)
            value = int(stored) if isinstance(stored, int | float) else 0
        return value

    def _write_own(self, root: str, entry: str, value: int) -> None:
        self._map(root)[entry] = value
        self._own[(root, entry)] = value

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run many edits in one pycrdt transaction.

        Counter adds inside are summed per (key, sign) and written once when
        the outermost batch ends: a thousand increments of one counter in a
        tick cost one entry write, and one item in the next update.
        """
        with self._doc.transaction():
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0:
                    self._write_pending()

    def _write_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for (root, entry), amount in pending.items():
            self._write_own(root, entry, self._own_value(root, entry) + amount)

    def state_vector(self) -> bytes:
        """Our state vector (Yrs v1 encoding)."""
        return self._doc.get_state()

    def encode_update(self, state_vector: bytes | None = None) -> bytes:
        """What a replica at ``state_vector`` lacks; everything when it is None."""
        return self._doc.get_update(state_vector)

    def apply_update(self, update: bytes) -> None:
        """Merge a peer's update (idempotent, any order).

        Raises :class:`MalformedUpdate`, leaving the document untouched, when the
        bytes do not decode. Yrs decodes the whole update before integrating any
        of it, which the tests check for truncations, bit flips and garbage.
        """
        if not isinstance(update, bytes):
            raise MalformedUpdate(f"update must be bytes, got {type(update).__name__}")
        try:
            self._doc.apply_update(update)
        except ValueError as exc:
            raise MalformedUpdate(str(exc)) from exc
        finally:
            self._live_adds.clear()
            self._own.clear()

    # -- counters (PN) ----------------------------------------------------------------------

    def counter_add(self, key: str, delta: int) -> None:
        """Add ``delta`` (negative to decrement) to counter ``key``."""
        if not isinstance(delta, int) or isinstance(delta, bool):
            raise InvalidKey(f"counter delta must be an int, got {delta!r}")
        if delta == 0:
            schema.check_key(key)
            return
        root = schema.counter_root(schema.check_key(key))
        entry = (schema.positive_entry if delta > 0 else schema.negative_entry)(self._writer)
        if self._batch_depth:
            slot = (root, entry)
            self._pending[slot] = self._pending.get(slot, 0) + abs(delta)
            return
        self._write_own(root, entry, self._own_value(root, entry) + abs(delta))

    def counter_value(self, key: str) -> int:
        """sum(P) - sum(N) over every writer; 0 for an unknown counter."""
        root = schema.counter_root(schema.check_key(key))
        total = schema.counter_total(self._entries(root))
        for (pending_root, entry), amount in self._pending.items():
            if pending_root == root:
                total += amount if entry.endswith("+") else -amount
        return total

    # -- observed-remove sets ---------------------------------------------------------------

    def _live(self, root: str) -> dict[str, dict[str, int]]:
        live = self._live_adds.get(root)
        if live is None:
            live = self._live_adds[root] = schema.live_adders(self._entries(root))
        return live

    def set_add(self, key: str, item: str) -> None:
        """Add ``item`` to set ``key``; wins over any remove that has not seen it."""
        root = schema.set_root(schema.check_key(key))
        schema.check_item(item)
        live = self._live(root)
        adders = live.get(item)
        if adders is not None and self._writer in adders:
            return  # our own add of it is still live: nothing to say
        entry = schema.add_entry(self._writer, item)
        tag = self._own_value(root, entry) + 1
        self._write_own(root, entry, tag)
        live.setdefault(item, {})[self._writer] = tag

    def set_remove(self, key: str, item: str) -> None:
        """Remove ``item`` from set ``key``: hides every add of it seen so far."""
        root = schema.set_root(schema.check_key(key))
        schema.check_item(item)
        live = self._live(root)
        adders = live.pop(item, None)
        if not adders:
            return
        with self._doc.transaction():
            for adder, tag in sorted(adders.items()):
                self._write_own(root, schema.remove_entry(adder, self._writer, item), tag)

    def set_items(self, key: str) -> frozenset[str]:
        """Current members of set ``key``."""
        root = schema.set_root(schema.check_key(key))
        return frozenset(item for item, adders in self._live(root).items() if adders)

    # -- flags (LWW) ------------------------------------------------------------------------

    def flag_set(self, key: str, value: bool) -> None:
        """Set flag ``key``; concurrent writes resolve to the higher client id."""
        if not isinstance(value, bool):
            raise InvalidKey(f"flag value must be a bool, got {value!r}")
        flags = self._map(schema.FLAGS_ROOT)
        schema.check_key(key)
        if flags.get(key) is not value:
            flags[key] = value

    def flag_get(self, key: str) -> bool | None:
        """Flag ``key``, or None if nobody has set it."""
        value = self._map(schema.FLAGS_ROOT).get(schema.check_key(key))
        return value if isinstance(value, bool) else None

    # -- everything -------------------------------------------------------------------------

    def snapshot(self) -> SwarmSnapshotDict:
        """Plain-data copy: counters, sets (sorted lists) and flags, empty ones left out."""
        counters: dict[str, int] = {}
        sets: dict[str, list[str]] = {}
        for name in list(self._doc.keys()):
            kind = schema.kind_of_root(name)
            if kind is None:
                continue
            what, key = kind
            if what == "counter":
                entries = self._entries(name)
                if entries:
                    counters[key] = schema.counter_total(entries)
            else:
                members = self.set_items(key)
                if members:
                    sets[key] = sorted(members)
        raw_flags = self._entries(schema.FLAGS_ROOT)
        flags = {key: value for key, value in raw_flags.items() if isinstance(value, bool)}
        return {
            "counters": dict(sorted(counters.items())),
            "sets": dict(sorted(sets.items())),
            "flags": dict(sorted(flags.items())),
        }
