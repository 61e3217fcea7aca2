"""Payload fields of module distribution (feature ``modules``), as pure functions.

MODULE_ASSIGN, MODULE_REPORT, BLOB_REQUEST and BLOB_CHUNK; ``codec.py`` calls
these for the frames it encodes and decodes. ``docs/protocol.md``, section 14,
is the specification. Manifests travel as the signed documents the registry
stores (``docs/modules.md``): the receiver verifies them, the codec only
bounds them.
"""

from __future__ import annotations

import re
from typing import Any, Final

from .errors import LocalProtocolError, MalformedFrame
from .fields import blob, field, number, text, uint, uint63
from .frames import BlobChunk, BlobRequest, ModuleAssign, ModuleAssignment, ModuleReport

__all__ = [
    "MAX_ASSIGNMENTS",
    "MAX_CHUNK_BYTES",
    "MAX_LABELS",
    "MAX_MANIFEST_BYTES",
    "decode_blob_chunk",
    "decode_blob_request",
    "decode_module_assign",
    "decode_module_report",
    "encode_blob_chunk",
    "encode_blob_request",
    "encode_module_assign",
    "encode_module_report",
]

MAX_ASSIGNMENTS: Final = 64
"""Most entries of one MODULE_ASSIGN."""
MAX_MANIFEST_BYTES: Final = 65_536
"""Longest manifest document."""
MAX_LABELS: Final = 32
"""Most labels of one assignment."""
MAX_LABEL_CHARS: Final = 64
MAX_MODULE_CHARS: Final = 64
MAX_VERSION_CHARS: Final = 128
MAX_CHUNK_BYTES: Final = 1 << 20
"""Largest BLOB_REQUEST ``length`` and BLOB_CHUNK ``data`` (1 MiB, under a frame's limit)."""
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _digest(m: dict[Any, Any]) -> str:
    value = text(m, "digest", 71, 71)
    if not _DIGEST.fullmatch(value):
        raise MalformedFrame("field 'digest' must be sha256:<64 lowercase hex>")
    return value


def _check_digest(digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise LocalProtocolError("digest must be sha256:<64 lowercase hex>")


def _assignment_fields(a: ModuleAssignment) -> dict[str, Any]:
    if not 1 <= len(a.module) <= MAX_MODULE_CHARS:
        raise LocalProtocolError(f"module must be 1..{MAX_MODULE_CHARS} characters")
    for manifest in (a.base, a.target):
        if manifest is not None and not 1 <= len(manifest) <= MAX_MANIFEST_BYTES:
            raise LocalProtocolError(f"a manifest is 1..{MAX_MANIFEST_BYTES} bytes")
    if not 0.0 <= a.share <= 1.0:
        raise LocalProtocolError("share must be in 0..1")
    if len(a.labels) > MAX_LABELS or not all(1 <= len(x) <= MAX_LABEL_CHARS for x in a.labels):
        raise LocalProtocolError(f"at most {MAX_LABELS} labels of 1..{MAX_LABEL_CHARS} characters")
    fields: dict[str, Any] = {
        "module": a.module,
        "base": bytes(a.base),
        "share": float(a.share),
        "labels": list(a.labels),
        "rollout": a.rollout,
    }
    if a.target is not None:
        fields["target"] = bytes(a.target)
    return fields


def encode_module_assign(frame: ModuleAssign) -> dict[str, Any]:
    if len(frame.assignments) > MAX_ASSIGNMENTS:
        raise LocalProtocolError(f"at most {MAX_ASSIGNMENTS} assignments")
    return {"assignments": [_assignment_fields(a) for a in frame.assignments]}


def _labels(m: dict[Any, Any]) -> tuple[str, ...]:
    value = field(m, "labels")
    if not isinstance(value, list) or len(value) > MAX_LABELS:
        raise MalformedFrame(f"field 'labels' must be an array of at most {MAX_LABELS}")
    if not all(isinstance(x, str) and 1 <= len(x) <= MAX_LABEL_CHARS for x in value):
        raise MalformedFrame(f"every label must be a string of 1..{MAX_LABEL_CHARS} characters")
    return tuple(value)


def _decode_assignment(m: Any) -> ModuleAssignment:
    if not isinstance(m, dict):
        raise MalformedFrame("every entry of 'assignments' must be a map")
    share = number(m, "share")
    if not 0.0 <= share <= 1.0:
        raise MalformedFrame("field 'share' must be in 0..1")
    target = blob(m, "target", MAX_MANIFEST_BYTES) if "target" in m else None
    return ModuleAssignment(
        module=text(m, "module", 1, MAX_MODULE_CHARS),
        base=blob(m, "base", MAX_MANIFEST_BYTES),
        target=target,
        share=share,
        labels=_labels(m),
        rollout=uint63(m, "rollout"),
    )


def decode_module_assign(m: dict[Any, Any], _max_batch_agents: int) -> ModuleAssign:
    value = field(m, "assignments")
    if not isinstance(value, list) or len(value) > MAX_ASSIGNMENTS:
        raise MalformedFrame(f"field 'assignments' must be an array of at most {MAX_ASSIGNMENTS}")
    return ModuleAssign(tuple(_decode_assignment(a) for a in value))


def encode_module_report(frame: ModuleReport) -> dict[str, Any]:
    if not 1 <= len(frame.module) <= MAX_MODULE_CHARS:
        raise LocalProtocolError(f"module must be 1..{MAX_MODULE_CHARS} characters")
    if not 1 <= len(frame.version) <= MAX_VERSION_CHARS:
        raise LocalProtocolError(f"version must be 1..{MAX_VERSION_CHARS} characters")
    if frame.faults > frame.agent_ticks:
        raise LocalProtocolError("faults cannot exceed agent_ticks")
    return {
        "module": frame.module,
        "version": frame.version,
        "rollout": frame.rollout,
        "ticks": frame.ticks,
        "agent_ticks": frame.agent_ticks,
        "faults": frame.faults,
    }


def decode_module_report(m: dict[Any, Any], _max_batch_agents: int) -> ModuleReport:
    agent_ticks, faults = uint63(m, "agent_ticks"), uint63(m, "faults")
    if faults > agent_ticks:
        raise MalformedFrame("field 'faults' cannot exceed 'agent_ticks'")
    return ModuleReport(
        module=text(m, "module", 1, MAX_MODULE_CHARS),
        version=text(m, "version", 1, MAX_VERSION_CHARS),
        rollout=uint63(m, "rollout"),
        ticks=uint63(m, "ticks"),
        agent_ticks=agent_ticks,
        faults=faults,
    )


def encode_blob_request(frame: BlobRequest) -> dict[str, Any]:
    _check_digest(frame.digest)
    if not 1 <= frame.length <= MAX_CHUNK_BYTES or frame.offset < 0:
        raise LocalProtocolError(f"length must be 1..{MAX_CHUNK_BYTES}, offset not negative")
    return {"digest": frame.digest, "offset": frame.offset, "length": frame.length}


def decode_blob_request(m: dict[Any, Any], _max_batch_agents: int) -> BlobRequest:
    length = uint(m, "length")
    if not 1 <= length <= MAX_CHUNK_BYTES:
        raise MalformedFrame(f"field 'length' must be 1..{MAX_CHUNK_BYTES}")
    return BlobRequest(digest=_digest(m), offset=uint63(m, "offset"), length=length)


def encode_blob_chunk(frame: BlobChunk) -> dict[str, Any]:
    _check_digest(frame.digest)
    if not 1 <= len(frame.data) <= MAX_CHUNK_BYTES:
        raise LocalProtocolError(f"data must be 1..{MAX_CHUNK_BYTES} bytes")
    if frame.offset < 0 or frame.offset + len(frame.data) > frame.size:
        raise LocalProtocolError("a chunk lies inside its blob")
    return {
        "digest": frame.digest,
        "offset": frame.offset,
        "size": frame.size,
        "data": bytes(frame.data),
    }


def decode_blob_chunk(m: dict[Any, Any], _max_batch_agents: int) -> BlobChunk:
    offset, size = uint63(m, "offset"), uint63(m, "size")
    data = blob(m, "data", MAX_CHUNK_BYTES)
    if offset + len(data) > size:
        raise MalformedFrame("a chunk must lie inside its blob ('offset' + len('data') <= 'size')")
    return BlobChunk(digest=_digest(m), offset=offset, size=size, data=data)
