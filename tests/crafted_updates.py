"""Swarm-state updates written by hand, as a peer that forges them would (tests only)."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map

from edgeswarm.state import client_id_for, schema

COUNTER = "swarm/anomalies"


def writer(peer_id: str, incarnation: int = 1) -> int:
    """The writer id (Yrs client id) of ``peer_id`` in ``incarnation``."""
    return client_id_for(peer_id, incarnation)


def entry(client: int) -> str:
    """The positive entry of writer ``client`` in a counter."""
    return schema.positive_entry(schema.writer_name(client))


def forged_update(base: bytes, *, as_client: int, root: str, key: str, value: Any) -> bytes:
    """``as_client`` sets ``root[key]`` to ``value`` (None: deletes it) on top of ``base``."""
    doc: Doc[Any] = Doc(client_id=as_client)
    doc.apply_update(base)
    before = doc.get_state()
    target = doc.get(root, type=Map)
    if value is None:
        del target[key]
    else:
        target[key] = value
    return doc.get_update(before)
