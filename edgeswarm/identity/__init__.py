"""Peer identity: ed25519 key pairs, signing the gateway's challenge, join tokens."""

from .keys import (
    KeyPair,
    fingerprint,
    load_or_create_key,
    public_key_from_text,
    public_key_text,
    verify_signature,
    write_private,
)

__all__ = [
    "KeyPair",
    "fingerprint",
    "load_or_create_key",
    "public_key_from_text",
    "public_key_text",
    "verify_signature",
    "write_private",
]
