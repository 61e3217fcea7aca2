"""Payload fields of STATUS (a gateway's answer to STATUS_REQUEST), as pure functions:
its edges' delivery figures. ``codec.py`` calls these for the frames it encodes and
decodes; ``docs/protocol.md`` is the specification."""

from __future__ import annotations

from typing import Any

from .errors import MalformedFrame
from .fields import MAX_TEXT_CHARS, boolean, ident, number, text, uint
from .frames import EdgeStatus, Status

__all__ = ["decode_status", "encode_status"]


def encode_status(frame: Status) -> dict[str, Any]:
    return {
        "gateway_id": frame.gateway_id,
        "uptime_s": float(frame.uptime_s),
        "edges": [
            {
                "peer_id": e.peer_id,
                "connected": e.connected,
                "agents": e.agents,
                "batches": e.batches,
                "observations": e.observations,
                "bytes": e.bytes,
                "last_seq": e.last_seq,
                "errors": e.errors,
                "last_seen": float(e.last_seen),
                "address": e.address,
            }
            for e in frame.edges
        ],
    }


def _decode_edge_status(obj: object) -> EdgeStatus:
    if not isinstance(obj, dict):
        raise MalformedFrame("every entry of 'edges' must be a map")
    return EdgeStatus(
        peer_id=ident(obj, "peer_id"),
        connected=boolean(obj, "connected"),
        agents=uint(obj, "agents"),
        batches=uint(obj, "batches"),
        observations=uint(obj, "observations"),
        bytes=uint(obj, "bytes"),
        last_seq=uint(obj, "last_seq"),
        errors=uint(obj, "errors"),
        last_seen=number(obj, "last_seen") if "last_seen" in obj else 0.0,
        address=text(obj, "address", 0, MAX_TEXT_CHARS) if "address" in obj else "",
    )


def decode_status(m: dict[Any, Any], max_batch_agents: int) -> Status:
    edges = m.get("edges", [])
    if not isinstance(edges, list):
        raise MalformedFrame("field 'edges' must be an array")
    return Status(
        gateway_id=ident(m, "gateway_id"),
        uptime_s=number(m, "uptime_s"),
        edges=tuple(_decode_edge_status(e) for e in edges),
    )
