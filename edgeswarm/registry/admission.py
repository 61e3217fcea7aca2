"""Whether a publish may go in: every check, in order, before anything is written (pure).

1. the manifest parses (:class:`ManifestError`);
2. it is signed (:class:`UnsignedManifestError`) and the signature verifies over its
   canonical bytes (:class:`SignatureError`);
3. the trust policy lets its publisher publish its name (:class:`UntrustedPublisherError`);
4. the blob is at most :data:`MAX_MODULE_BYTES` (:class:`ModuleTooLargeError`) and is
   the one it names: sha256 and size (:class:`DigestMismatchError`);
5. it is ABI v1, by its manifest and by the blob's exports (:class:`AbiMismatchError`).

The signature is checked before trust so that an altered manifest is named
as such whoever the publisher claims to be.
"""

from __future__ import annotations

from typing import Final

from .abi_check import ModuleCompiler, check_abi, compile_here
from .errors import DigestMismatchError, ModuleTooLargeError
from .manifest import Manifest, blob_digest, parse_manifest
from .signing import verify_manifest
from .trust import TrustPolicy

MAX_MODULE_BYTES: Final = 8 * 1024 * 1024
"""Largest module a registry takes: an edge's default ``--module-max-mb`` (8 MiB)."""


def admit(
    manifest_bytes: bytes,
    blob: bytes,
    trust: TrustPolicy,
    compile_module: ModuleCompiler = compile_here,
) -> Manifest:
    """The manifest of an acceptable publish, or the first check's error; the ABI check
    compiles with ``compile_module`` (:mod:`.abi_check`)."""
    manifest = parse_manifest(manifest_bytes)
    verify_manifest(manifest)
    trust.check(manifest.publisher, manifest.name)
    if len(blob) > MAX_MODULE_BYTES:
        raise ModuleTooLargeError(
            f"{manifest.ref} is {len(blob)} bytes; a registry takes modules of at most "
            f"{MAX_MODULE_BYTES} bytes (an edge's default --module-max-mb)"
        )
    check_blob(manifest, blob)
    check_abi(manifest, blob, compile_module)
    return manifest


def check_blob(manifest: Manifest, blob: bytes) -> None:
    """Raise :class:`DigestMismatchError` unless ``blob`` has the manifest's digest and size."""
    digest = blob_digest(blob)
    if digest != manifest.digest or len(blob) != manifest.size:
        raise DigestMismatchError(
            f"{manifest.ref}: the blob is {digest} ({len(blob)} bytes) but the manifest names "
            f"{manifest.digest} ({manifest.size} bytes): the blob or the manifest was altered"
        )
