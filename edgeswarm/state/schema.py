"""How swarm state is laid out in a pycrdt (Yrs) document, and why it converges.

Keys are scoped per agent group: ``"group/name"`` (see :func:`check_key`).
Every key lives in its own *root* map, named by kind (``c:`` counter, ``s:``
set) or in the one ``flags`` root. Roots are identified by name, so two
replicas creating the same root concurrently never conflict; nested shared
types are never created, because two concurrent creations of a nested map
under one key would make one of them (and all its entries) lose.

Writers
    A *writer* is one pycrdt client id, derived from the edge/gateway id and
    an incarnation by :func:`client_id_for`, and written as 14 hex digits in
    entry names. A writer only ever overwrites entries that carry its own id.
    Its successive writes to one entry are causally ordered (each new item
    names the previous one as seen), so every replica keeps the latest: an
    entry owned by one writer is a register with no concurrent writes at all.

Counters (PN-counter), root ``c:<key>``
    ``<writer>+`` holds the sum of the writer's positive deltas (P),
    ``<writer>-`` the sum of the magnitudes of its negative ones (N).
    value = sum(P) - sum(N). Values travel as float64 in Yrs: exact up to 2**53.

Sets (observed-remove, add wins), root ``s:<key>``
    ``+<adder><item>`` holds the adder's add tag for item: 1, 2, 3... bumped on
    every add by that adder. ``-<adder><remover><item>`` holds the highest add
    tag of ``adder`` that ``remover`` had seen when it removed the item.
    Every entry has a single owner (the adder, resp. the remover) and only
    grows, so re-delivering a stale update changes nothing (Yrs ignores
    (client, clock) pairs it already integrated) and cannot undo a removal.
    An item is present iff some adder's tag exceeds every remover's tombstone
    for that adder: a remove hides only the adds it observed, so an add
    concurrent with the remove (a tag the remover never saw) wins.
    Tombstones are kept forever (they are small integers).

Flags (last-writer-wins), root ``flags``
    key -> bool, written by anyone. A write that has seen an earlier write
    replaces it. Two concurrent writes (neither saw the other) are ordered by
    Yrs: the item of the *higher client id* wins on every replica. So
    "last" means causally last; ties break by client id, not wall time.
"""

from __future__ import annotations

import hashlib
import re

from edgeswarm.state.errors import InvalidKey

__all__ = [
    "CLIENT_ID_BITS",
    "COUNTER_PREFIX",
    "FLAGS_ROOT",
    "SET_PREFIX",
    "WRITER_HEX",
    "add_entry",
    "check_item",
    "check_key",
    "client_id_for",
    "counter_root",
    "counter_total",
    "kind_of_root",
    "live_adders",
    "negative_entry",
    "positive_entry",
    "remove_entry",
    "set_root",
    "writer_name",
]

CLIENT_ID_BITS = 53
"""Client ids stay below 2**53 so that JavaScript Yjs peers can read them."""
WRITER_HEX = 14
"""Hex digits of a writer name (53 bits)."""
FLAGS_ROOT = "flags"
"""Root map of the flags."""
COUNTER_PREFIX = "c:"
SET_PREFIX = "s:"

_KEY = re.compile(r"[A-Za-z0-9_.:-]+/[A-Za-z0-9_.:/-]+")


def client_id_for(writer_id: str, incarnation: int = 0) -> int:
    """Stable pycrdt client id of ``writer_id`` in its ``incarnation``.

    The same (writer id, incarnation) always maps to the same client id. A
    process that restarts *with* its persisted document keeps its incarnation;
    one that restarts *without* it must use a new incarnation, otherwise its
    new writes reuse (client id, clock) pairs the swarm already holds and are
    dropped (:class:`~edgeswarm.state.errors.WriterReused` detects this).
    """
    digest = hashlib.blake2b(
        f"{writer_id}\x00{incarnation}".encode(), digest_size=8, person=b"es-state"
    ).digest()
    return int.from_bytes(digest, "little") & ((1 << CLIENT_ID_BITS) - 1)


def writer_name(client_id: int) -> str:
    """Fixed-width name of a writer inside entry names."""
    return f"{client_id:0{WRITER_HEX}x}"


def check_key(key: str) -> str:
    """Return ``key`` if it is ``"group/name"``; raise :class:`InvalidKey` otherwise."""
    if not isinstance(key, str) or _KEY.fullmatch(key) is None:
        raise InvalidKey(f"state key must be 'group/name' ([A-Za-z0-9_.:-]), got {key!r}")
    return key


def check_item(item: str) -> str:
    """Return ``item`` if it is a non-empty str; raise :class:`InvalidKey` otherwise."""
    if not isinstance(item, str) or not item:
        raise InvalidKey(f"set item must be a non-empty str, got {item!r}")
    return item


def counter_root(key: str) -> str:
    return COUNTER_PREFIX + key


def set_root(key: str) -> str:
    return SET_PREFIX + key


def positive_entry(writer: str) -> str:
    return writer + "+"


def negative_entry(writer: str) -> str:
    return writer + "-"


def add_entry(adder: str, item: str) -> str:
    return "+" + adder + item


def remove_entry(adder: str, remover: str, item: str) -> str:
    return "-" + adder + remover + item


def counter_total(entries: dict[str, object]) -> int:
    """Value of a counter from its root map's entries (ill-typed entries are ignored)."""
    total = 0
    for name, value in entries.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            if name.endswith("+"):
                total += int(value)
            elif name.endswith("-"):
                total -= int(value)
    return total


def live_adders(entries: dict[str, object]) -> dict[str, dict[str, int]]:
    """Set members from a set root's entries: item -> {adder: add tag} of the adds
    that no tombstone covers (an item with none is not a member)."""
    w = WRITER_HEX
    added: dict[tuple[str, str], int] = {}
    covered: dict[tuple[str, str], int] = {}
    for name, value in entries.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if name[:1] == "+" and len(name) > 1 + w:
            added[(name[1 + w :], name[1 : 1 + w])] = int(value)
        elif name[:1] == "-" and len(name) > 1 + 2 * w:
            slot = (name[1 + 2 * w :], name[1 : 1 + w])
            covered[slot] = max(covered.get(slot, 0), int(value))
    live: dict[str, dict[str, int]] = {}
    for (item, adder), tag in added.items():
        if tag > covered.get((item, adder), 0):
            live.setdefault(item, {})[adder] = tag
    return live


def kind_of_root(name: str) -> tuple[str, str] | None:
    """(``"counter"`` | ``"set"``, key) for a root name of ours, else None."""
    if name.startswith(COUNTER_PREFIX):
        return "counter", name[len(COUNTER_PREFIX) :]
    if name.startswith(SET_PREFIX):
        return "set", name[len(SET_PREFIX) :]
    return None
