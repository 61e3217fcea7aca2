"""Peer keys on disk and in text, signatures, fingerprints (``edgeswarm.identity``)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from edgeswarm.identity import (
    KeyPair,
    fingerprint,
    load_or_create_key,
    public_key_from_text,
    public_key_text,
    verify_signature,
)
from edgeswarm.identity.keys import KeyFileError


def test_a_saved_key_loads_back_private_to_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "edge.key"
    pair = KeyPair.generate()
    pair.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert not path.with_name("edge.key.tmp").exists()
    loaded = KeyPair.load(path)
    assert loaded.public_key == pair.public_key
    message = b"challenge"
    assert verify_signature(pair.public_key, loaded.sign(message), message)


def test_load_or_create_creates_once_then_loads(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    first = load_or_create_key(path)
    assert path.exists()
    assert load_or_create_key(path).public_key == first.public_key


def _write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _pem(key: object, encryption: serialization.KeySerializationEncryption) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _saved(path: Path, mode: int) -> Path:
    KeyPair.generate().save(path)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "cannot read key"),  # missing
        (
            lambda p: _saved(p, mode=0o640),
            "is readable by others (mode 640); chmod 600",
        ),
        (
            lambda p: _write(p, b"-----BEGIN NOTHING-----\n"),
            "is not an unencrypted PEM private key",
        ),
        (
            lambda p: _write(
                p,
                _pem(
                    KeyPair.generate().private_key,
                    serialization.BestAvailableEncryption(b"secret"),
                ),
            ),
            "is not an unencrypted PEM private key",
        ),
        (
            lambda p: _write(
                p, _pem(ec.generate_private_key(ec.SECP256R1()), serialization.NoEncryption())
            ),
            "holds a ECPrivateKey, not an ed25519 key",
        ),
    ],
    ids=["missing", "world-readable", "not-pem", "encrypted", "not-ed25519"],
)
def test_bad_key_files_raise_key_file_error(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path / "bad.key")
    with pytest.raises(KeyFileError) as info:
        KeyPair.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    if path.exists():  # a bad file is never replaced by a new key
        before = path.read_bytes()
        with pytest.raises(KeyFileError):
            load_or_create_key(path)
        assert path.read_bytes() == before


def test_public_key_text_round_trips_and_refuses_what_is_not_a_key() -> None:
    raw = KeyPair.generate().public_key
    text = public_key_text(raw)
    assert text.startswith("ed25519:")
    assert "=" not in text
    assert public_key_from_text(text) == raw
    assert public_key_from_text("  " + text.removeprefix("ed25519:") + "\n") == raw
    short = "ed25519:" + base64.urlsafe_b64encode(raw[:31]).decode()
    with pytest.raises(ValueError, match="32 bytes"):
        public_key_from_text(short)
    with pytest.raises(ValueError, match="not a public key"):
        public_key_from_text("ed25519:a")  # one base64 character cannot decode


def test_signatures_verify_only_for_their_key_and_message() -> None:
    pair, other = KeyPair.generate(), KeyPair.generate()
    signature = pair.sign(b"m")
    assert len(signature) == 64
    assert verify_signature(pair.public_key, signature, b"m")
    assert not verify_signature(pair.public_key, signature, b"n")
    assert not verify_signature(other.public_key, signature, b"m")
    assert not verify_signature(pair.public_key, signature[:-1], b"m")
    assert not verify_signature(b"\x00" * 31, signature, b"m")  # not a public key at all


def test_fingerprint_is_stable_and_short() -> None:
    raw = bytes(range(32))
    assert fingerprint(raw) == fingerprint(bytes(raw))
    assert len(fingerprint(raw)) == 16
    assert fingerprint(raw) != fingerprint(bytes(32))
    assert fingerprint(raw) == "630dcd2966c43366"
