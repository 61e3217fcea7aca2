"""Signing a manifest and checking its signature (ed25519 over the canonical bytes).

Publisher keys are the same kind as peer keys (:mod:`edgeswarm.identity`):
``edgeswarm keys init --key publisher.key`` makes one.
"""

from __future__ import annotations

from dataclasses import replace

from edgeswarm.identity import KeyPair, fingerprint, verify_signature

from .errors import ManifestError, SignatureError, UnsignedManifestError
from .manifest import Manifest


def sign_manifest(manifest: Manifest, key: KeyPair) -> Manifest:
    """``manifest`` with ``key`` as its publisher, signed by it."""
    unsigned = replace(manifest, publisher=key.public_key, signature=None)
    return unsigned.with_signature(key.sign(unsigned.canonical_bytes()))


def verify_manifest(manifest: Manifest) -> None:
    """Raise unless ``manifest`` carries its publisher's valid signature.

    :class:`UnsignedManifestError` when there is none, :class:`SignatureError`
    when it does not verify (the manifest was changed after signing, or another
    key signed it).
    """
    if manifest.signature is None:
        raise UnsignedManifestError(
            f"{manifest.ref} is not signed: run `edgeswarm agents sign` with a publisher key"
        )
    if len(manifest.signature) != 64:
        raise ManifestError(f"{manifest.ref}: a signature is 64 bytes")
    if not verify_signature(manifest.publisher, manifest.signature, manifest.canonical_bytes()):
        raise SignatureError(
            f"{manifest.ref}: the signature does not verify for publisher "
            f"{fingerprint(manifest.publisher)} (the manifest was changed after signing?)"
        )
