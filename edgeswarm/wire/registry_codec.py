"""Payload fields of registry replication (feature ``registry``), as pure functions.

REGISTRY_INDEX, REGISTRY_REQUEST and REGISTRY_CHUNK; ``codec.py`` calls these
for the frames it encodes and decodes. ``docs/protocol.md``, section 15, is
the specification. Manifests and blobs travel as stored; the receiver runs
every admission check on them, the codec only bounds them.
"""

from __future__ import annotations

import re
from typing import Any, Final

from .errors import LocalProtocolError, MalformedFrame
from .fields import blob, field, text, uint, uint63
from .module_codec import MAX_CHUNK_BYTES, MAX_MANIFEST_BYTES
from .registry_frames import (
    DeploymentEntry,
    IndexEntry,
    RegistryChunk,
    RegistryIndex,
    RegistryRequest,
)

__all__ = [
    "MAX_INDEX_DEPLOYMENTS",
    "MAX_INDEX_MODULES",
    "MAX_PLAN_CHARS",
    "decode_registry_chunk",
    "decode_registry_index",
    "decode_registry_request",
    "encode_registry_chunk",
    "encode_registry_index",
    "encode_registry_request",
]

MAX_INDEX_MODULES: Final = 16_384
"""Most module versions one REGISTRY_INDEX lists."""
MAX_INDEX_DEPLOYMENTS: Final = 4_096
"""Most deployment records one REGISTRY_INDEX carries."""
MAX_PLAN_CHARS: Final = 65_536
"""Longest rollout plan (JSON)."""
MAX_NAME_CHARS: Final = 64
MAX_VERSION_CHARS: Final = 128
MAX_ORIGIN_CHARS: Final = 64
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise LocalProtocolError(message)


def _check_ref(name: str, version: str) -> None:
    _check(1 <= len(name) <= MAX_NAME_CHARS, f"name must be 1..{MAX_NAME_CHARS} characters")
    _check(
        1 <= len(version) <= MAX_VERSION_CHARS,
        f"version must be 1..{MAX_VERSION_CHARS} characters",
    )


def _entry_fields(entry: IndexEntry) -> list[Any]:
    _check_ref(entry.name, entry.version)
    _check(bool(_DIGEST.fullmatch(entry.digest)), "digest must be sha256:<64 lowercase hex>")
    return [entry.name, entry.version, entry.digest]


def _deployment_fields(d: DeploymentEntry) -> dict[str, Any]:
    _check_ref(d.name, d.version)
    if d.previous is not None:
        _check_ref(d.name, d.previous)
    _check(d.plan is None or 1 <= len(d.plan) <= MAX_PLAN_CHARS, "plan is 1..65536 characters")
    _check(1 <= len(d.origin) <= MAX_ORIGIN_CHARS, "origin is 1..64 characters")
    _check(0 <= d.rollout < 2**63 and 0 <= d.counter < 2**63, "rollout, counter: 0..2**63-1")
    return {
        "name": d.name,
        "version": d.version,
        "previous": d.previous,
        "rollout": d.rollout,
        "plan": d.plan,
        "counter": d.counter,
        "origin": d.origin,
    }


def encode_registry_index(frame: RegistryIndex) -> dict[str, Any]:
    _check(len(frame.modules) <= MAX_INDEX_MODULES, f"at most {MAX_INDEX_MODULES} modules")
    _check(
        len(frame.deployments) <= MAX_INDEX_DEPLOYMENTS,
        f"at most {MAX_INDEX_DEPLOYMENTS} deployments",
    )
    return {
        "modules": [_entry_fields(e) for e in frame.modules],
        "deployments": [_deployment_fields(d) for d in frame.deployments],
    }


def _list(m: dict[Any, Any], key: str, most: int) -> list[Any]:
    value = field(m, key)
    if not isinstance(value, list) or len(value) > most:
        raise MalformedFrame(f"field {key!r} must be an array of at most {most}")
    return value


def _decode_entry(value: Any) -> IndexEntry:
    if not isinstance(value, list) or len(value) != 3 or not all(isinstance(v, str) for v in value):
        raise MalformedFrame("every entry of 'modules' is [name, version, digest] (strings)")
    name, version, digest = value
    if not (1 <= len(name) <= MAX_NAME_CHARS and 1 <= len(version) <= MAX_VERSION_CHARS):
        raise MalformedFrame("a module entry's name or version is too long or empty")
    if not _DIGEST.fullmatch(digest):
        raise MalformedFrame("a module entry's digest must be sha256:<64 lowercase hex>")
    return IndexEntry(name, version, digest)


def _optional_text(m: dict[Any, Any], key: str, most: int) -> str | None:
    if field(m, key) is None:
        return None
    return text(m, key, 1, most)


def _decode_deployment(m: Any) -> DeploymentEntry:
    if not isinstance(m, dict):
        raise MalformedFrame("every entry of 'deployments' must be a map")
    return DeploymentEntry(
        name=text(m, "name", 1, MAX_NAME_CHARS),
        version=text(m, "version", 1, MAX_VERSION_CHARS),
        previous=_optional_text(m, "previous", MAX_VERSION_CHARS),
        rollout=uint63(m, "rollout"),
        plan=_optional_text(m, "plan", MAX_PLAN_CHARS),
        counter=uint63(m, "counter"),
        origin=text(m, "origin", 1, MAX_ORIGIN_CHARS),
    )


def decode_registry_index(m: dict[Any, Any], _max_batch_agents: int) -> RegistryIndex:
    return RegistryIndex(
        modules=tuple(_decode_entry(e) for e in _list(m, "modules", MAX_INDEX_MODULES)),
        deployments=tuple(
            _decode_deployment(d) for d in _list(m, "deployments", MAX_INDEX_DEPLOYMENTS)
        ),
    )


def encode_registry_request(frame: RegistryRequest) -> dict[str, Any]:
    _check_ref(frame.name, frame.version)
    _check(
        1 <= frame.length <= MAX_CHUNK_BYTES and frame.offset >= 0,
        f"length must be 1..{MAX_CHUNK_BYTES}, offset not negative",
    )
    return {
        "name": frame.name,
        "version": frame.version,
        "offset": frame.offset,
        "length": frame.length,
    }


def decode_registry_request(m: dict[Any, Any], _max_batch_agents: int) -> RegistryRequest:
    length = uint(m, "length")
    if not 1 <= length <= MAX_CHUNK_BYTES:
        raise MalformedFrame(f"field 'length' must be 1..{MAX_CHUNK_BYTES}")
    return RegistryRequest(
        name=text(m, "name", 1, MAX_NAME_CHARS),
        version=text(m, "version", 1, MAX_VERSION_CHARS),
        offset=uint63(m, "offset"),
        length=length,
    )


def encode_registry_chunk(frame: RegistryChunk) -> dict[str, Any]:
    _check_ref(frame.name, frame.version)
    _check(1 <= len(frame.manifest) <= MAX_MANIFEST_BYTES, "a manifest is 1..65536 bytes")
    _check(1 <= len(frame.data) <= MAX_CHUNK_BYTES, f"data must be 1..{MAX_CHUNK_BYTES} bytes")
    _check(
        frame.offset >= 0 and frame.offset + len(frame.data) <= frame.size,
        "a chunk lies inside its blob",
    )
    return {
        "name": frame.name,
        "version": frame.version,
        "manifest": bytes(frame.manifest),
        "offset": frame.offset,
        "size": frame.size,
        "data": bytes(frame.data),
    }


def decode_registry_chunk(m: dict[Any, Any], _max_batch_agents: int) -> RegistryChunk:
    offset, size = uint63(m, "offset"), uint63(m, "size")
    data = blob(m, "data", MAX_CHUNK_BYTES)
    if not data or offset + len(data) > size:
        raise MalformedFrame("a chunk is non-empty and lies inside its blob")
    return RegistryChunk(
        name=text(m, "name", 1, MAX_NAME_CHARS),
        version=text(m, "version", 1, MAX_VERSION_CHARS),
        manifest=blob(m, "manifest", MAX_MANIFEST_BYTES),
        offset=offset,
        size=size,
        data=data,
    )
