"""ed25519 key pairs of peers: created once, kept private on disk, used to answer challenges.

Public keys travel raw (32 bytes) in HELLO and are shown to operators as
``ed25519:<base64url>``; a fingerprint is the first 16 hex digits of the
key's SHA-256.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edgeswarm.errors import EdgeswarmError

KEY_PREFIX = "ed25519:"


class KeyFileError(EdgeswarmError):
    """A key file is missing, unreadable, not a private ed25519 key, or readable by others
    (the file is wrong: ``writing`` False), or it cannot be written (``writing`` True)."""

    def __init__(self, message: str, *, writing: bool = False) -> None:
        super().__init__(message)
        self.writing = writing
        """The key could not be written (the disk, not the file the operator named)."""


@dataclass(frozen=True)
class KeyPair:
    """A peer's private key and its raw public key."""

    private_key: Ed25519PrivateKey
    public_key: bytes

    @classmethod
    def generate(cls) -> KeyPair:
        key = Ed25519PrivateKey.generate()
        return cls(key, key.public_key().public_bytes_raw())

    def sign(self, message: bytes) -> bytes:
        """ed25519 signature of ``message`` (64 bytes)."""
        return self.private_key.sign(message)

    def save(self, path: Path) -> None:
        """Write the private key as PKCS#8 PEM, mode 0600, atomically (:func:`write_private`)."""
        pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private(path, pem)

    @classmethod
    def load(cls, path: Path) -> KeyPair:
        try:
            mode = path.stat().st_mode
            data = path.read_bytes()
        except OSError as exc:
            raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from exc
        if mode & 0o077:
            raise KeyFileError(
                f"key {path} is readable by others (mode {mode & 0o777:o}); chmod 600"
            )
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"{path} is not an unencrypted PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not an ed25519 key")
        return cls(key, key.public_key().public_bytes_raw())


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by its owner only.

    The temporary file is created exclusively with mode 0600 under a fresh
    name (``mkstemp``): a leftover ``.tmp`` file, world-readable or a link
    planted by someone else, is never written through nor reused. It is synced
    before it replaces ``path``. Raises ``KeyFileError`` naming the file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise KeyFileError(f"cannot write {path}: {exc.strerror}", writing=True) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise KeyFileError(f"cannot write {path}: {exc.strerror}", writing=True) from exc


def load_or_create_key(path: Path) -> KeyPair:
    """The key pair at ``path``, created (0600) on first use."""
    if path.exists():
        return KeyPair.load(path)
    pair = KeyPair.generate()
    pair.save(path)
    return pair


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def public_key_text(public_key: bytes) -> str:
    """``ed25519:<base64url>`` form of a raw public key, for operators and config."""
    return KEY_PREFIX + base64.urlsafe_b64encode(public_key).decode().rstrip("=")


def public_key_from_text(text: str) -> bytes:
    """Inverse of ``public_key_text``; raises ValueError with a clear message."""
    body = text.strip().removeprefix(KEY_PREFIX)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except ValueError as exc:
        raise ValueError(f"not a public key: {text!r}") from exc
    if len(raw) != 32:
        raise ValueError(f"an ed25519 public key is 32 bytes, {text!r} has {len(raw)}")
    return raw


def fingerprint(public_key: bytes) -> str:
    """Short, stable name of a public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]
