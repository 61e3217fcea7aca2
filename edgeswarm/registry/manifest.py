"""Module manifests: what a published Wasm agent module is, and the bytes a publisher signs.

A manifest is a JSON object (``docs/modules.md`` is its specification)::

    {"schema": "edgeswarm.module.v1", "name": "flocking", "version": "1.2.0",
     "digest": "sha256:<64 hex>", "size": 1234, "abi_version": 1,
     "descriptor": {"name": "flocking", "obs_dim": 8, "state_dim": 2, "act_dim": 2,
                    "counters": [], "sets": [], "flags": [], "models": [], "heavy": []},
     "publisher": "ed25519:<base64url>", "signature": "<base64url of 64 bytes>"}

The **canonical bytes** are the object without ``signature``, serialised by
RFC 8785 (JSON Canonicalization Scheme: keys sorted, no whitespace, UTF-8);
the signature is the publisher's ed25519 signature of them. Every value is a
string, an integer or a list of strings, so another tool reproduces the bytes
with any JCS implementation (or ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)``, which gives the same bytes for
these values).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Final

import rfc8785
import semver

from edgeswarm.identity import public_key_from_text, public_key_text

from .errors import ManifestError

SCHEMA: Final = "edgeswarm.module.v1"
"""Value of every manifest's ``schema`` field."""
NAME_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""A module name: 1-64 of ``a-z 0-9 . _ -``, starting with a letter or digit."""
DIGEST_PATTERN: Final = re.compile(r"sha256:[0-9a-f]{64}")
"""A content digest as OCI writes it."""
DIMENSIONS: Final = ("obs_dim", "state_dim", "act_dim")
KEY_LISTS: Final = ("counters", "sets", "flags", "models", "heavy")
MAX_MANIFEST_BYTES: Final = 65_536
"""Largest manifest document read."""


def blob_digest(blob: bytes) -> str:
    """``sha256:<hex>`` of ``blob``: the address of a module in the store and in OCI."""
    return "sha256:" + hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class ModuleDescriptor:
    """The part of ``es_describe`` a manifest carries: widths, state layout, shared keys."""

    name: str
    """The name the module gives itself."""
    obs_dim: int
    """f32 observations per agent."""
    state_dim: int
    """f32 of state per agent: the state layout a hot swap must keep (or migrate)."""
    act_dim: int
    """f32 actions per agent."""
    keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """``counters``, ``sets``, ``flags``, ``models``, ``heavy``: sorted names."""

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name}
        doc.update({dim: getattr(self, dim) for dim in DIMENSIONS})
        doc.update({key: list(self.keys.get(key, ())) for key in KEY_LISTS})
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> ModuleDescriptor:
        if not isinstance(doc, dict):
            raise ManifestError("manifest 'descriptor' must be an object")
        name = doc.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 64:
            raise ManifestError("descriptor 'name' must be a string of 1-64 characters")
        dims = {}
        for dim in DIMENSIONS:
            value = doc.get(dim)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4096:
                raise ManifestError(f"descriptor {dim!r} must be an integer 0-4096, got {value!r}")
            dims[dim] = value
        keys: dict[str, tuple[str, ...]] = {}
        for key in KEY_LISTS:
            value = doc.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ManifestError(f"descriptor {key!r} must be a list of strings")
            keys[key] = tuple(sorted(value))
        return cls(name=name, keys=keys, **dims)


@dataclass(frozen=True)
class Manifest:
    """One version of one module, as published and signed."""

    name: str
    """Module name in the registry (:data:`NAME_PATTERN`)."""
    version: str
    """Semantic version (semver.org 2.0)."""
    digest: str
    """``sha256:<hex>`` of the Wasm bytes."""
    size: int
    """Length of the Wasm bytes."""
    abi_version: int
    """Agent ABI the module speaks (``es_abi_version()``)."""
    descriptor: ModuleDescriptor
    """What ``es_describe`` returned at build time."""
    publisher: bytes
    """Raw ed25519 public key of the publisher (32 bytes)."""
    signature: bytes | None = None
    """ed25519 signature of :meth:`canonical_bytes` by ``publisher``; None when unsigned."""

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    def unsigned_document(self) -> dict[str, Any]:
        """The manifest object without ``signature``."""
        return {
            "schema": SCHEMA,
            "name": self.name,
            "version": self.version,
            "digest": self.digest,
            "size": self.size,
            "abi_version": self.abi_version,
            "descriptor": self.descriptor.to_json(),
            "publisher": public_key_text(self.publisher),
        }

    def canonical_bytes(self) -> bytes:
        """The bytes the publisher signs: RFC 8785 of :meth:`unsigned_document`."""
        return rfc8785.dumps(self.unsigned_document())

    def document(self) -> dict[str, Any]:
        """The whole manifest object, with ``signature`` when there is one."""
        doc = self.unsigned_document()
        if self.signature is not None:
            doc["signature"] = _b64(self.signature)
        return doc

    def to_bytes(self) -> bytes:
        """The manifest document as stored and shipped (canonical form, signature included)."""
        return rfc8785.dumps(self.document())

    def with_signature(self, signature: bytes) -> Manifest:
        return replace(self, signature=signature)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ManifestError(f"manifest {what!r} is not base64url") from exc


def _field(doc: dict[str, Any], key: str, kind: type) -> Any:
    value = doc.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ManifestError(f"manifest field {key!r} must be a {kind.__name__}, got {value!r}")
    return value


def parse_manifest(data: bytes) -> Manifest:
    """The manifest in ``data`` (JSON), checked field by field; raises :class:`ManifestError`."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"a manifest is at most {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ManifestError(f"a manifest is a JSON object: {exc}") from exc
    if not isinstance(doc, dict):
        raise ManifestError("a manifest is a JSON object")
    if doc.get("schema") != SCHEMA:
        raise ManifestError(f"manifest 'schema' must be {SCHEMA!r}, got {doc.get('schema')!r}")
    name = _field(doc, "name", str)
    if not NAME_PATTERN.fullmatch(name):
        raise ManifestError(f"module name {name!r}: 1-64 of a-z 0-9 . _ -, first a letter or digit")
    version = check_version(_field(doc, "version", str))
    digest = _field(doc, "digest", str)
    if not DIGEST_PATTERN.fullmatch(digest):
        raise ManifestError(f"manifest 'digest' must be sha256:<64 lowercase hex>, got {digest!r}")
    size = _field(doc, "size", int)
    if size < 0:
        raise ManifestError("manifest 'size' must not be negative")
    try:
        publisher = public_key_from_text(_field(doc, "publisher", str))
    except ValueError as exc:
        raise ManifestError(f"manifest 'publisher': {exc}") from exc
    signature_text = doc.get("signature")
    signature = None
    if signature_text is not None:
        if not isinstance(signature_text, str):
            raise ManifestError("manifest 'signature' must be a string")
        signature = _unb64(signature_text, "signature")
    return Manifest(
        name=name,
        version=version,
        digest=digest,
        size=size,
        abi_version=_field(doc, "abi_version", int),
        descriptor=ModuleDescriptor.from_json(doc.get("descriptor")),
        publisher=publisher,
        signature=signature,
    )


def check_version(version: str) -> str:
    """``version`` if it is a semantic version, else :class:`ManifestError`."""
    try:
        semver.Version.parse(version)
    except ValueError as exc:
        raise ManifestError(f"version {version!r} is not a semantic version (1.2.3)") from exc
    return version


def version_key(version: str) -> semver.Version:
    """Sort key of versions in semver order."""
    return semver.Version.parse(version)
