"""Typed reads of a payload map's fields: each checks type and limits, or raises
``MalformedFrame`` naming the field (``docs/protocol.md``, section 7)."""

from __future__ import annotations

from typing import Any

from .errors import MalformedFrame

__all__ = [
    "MAX_FEATURES",
    "MAX_FEATURE_CHARS",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "UINT63_MAX",
    "UINT64_MAX",
    "blob",
    "boolean",
    "features",
    "field",
    "fixed_bin",
    "ident",
    "number",
    "text",
    "uint",
    "uint63",
]

UINT64_MAX = 2**64 - 1
"""Largest value of an integer field."""
UINT63_MAX = 2**63 - 1
"""Largest value of a field a store keeps as a signed 64-bit integer (``seq``, ``tick``)."""
MAX_ID_CHARS = 128
"""Longest peer_id, session_id and gateway_id, in characters."""
MAX_TEXT_CHARS = 4096
"""Longest Error.message and Bye.reason, in characters."""
MAX_FEATURES = 32
"""Most entries of a HELLO / WELCOME ``features`` list."""
MAX_FEATURE_CHARS = 64
"""Longest feature name, in characters."""


def field(m: dict[Any, Any], key: str) -> Any:
    """The value under ``key``; a missing key is malformed."""
    try:
        return m[key]
    except KeyError:
        raise MalformedFrame(f"missing field {key!r}") from None


def uint(m: dict[Any, Any], key: str) -> int:
    """An integer in 0..2**64-1."""
    value = field(m, key)
    if type(value) is not int or not 0 <= value <= UINT64_MAX:
        raise MalformedFrame(f"field {key!r} must be an integer in 0..2**64-1, got {value!r}")
    return value


def uint63(m: dict[Any, Any], key: str) -> int:
    """An integer in 0..2**63-1 (stored as SQLite INTEGER, a signed 64-bit value)."""
    value = field(m, key)
    if type(value) is not int or not 0 <= value <= UINT63_MAX:
        raise MalformedFrame(f"field {key!r} must be an integer in 0..2**63-1, got {value!r}")
    return value


def text(m: dict[Any, Any], key: str, min_chars: int, max_chars: int) -> str:
    """A string of ``min_chars``..``max_chars`` characters."""
    value = field(m, key)
    if not isinstance(value, str) or not min_chars <= len(value) <= max_chars:
        raise MalformedFrame(
            f"field {key!r} must be a string of {min_chars}..{max_chars} characters"
        )
    return value


def ident(m: dict[Any, Any], key: str) -> str:
    """An id (``peer_id``, ``session_id``, ``gateway_id``): 1..MAX_ID_CHARS characters."""
    return text(m, key, 1, MAX_ID_CHARS)


def boolean(m: dict[Any, Any], key: str) -> bool:
    """A boolean."""
    value = field(m, key)
    if type(value) is not bool:
        raise MalformedFrame(f"field {key!r} must be a boolean")
    return value


def number(m: dict[Any, Any], key: str) -> float:
    """An integer or a float, as a float."""
    value = field(m, key)
    if type(value) not in (float, int):
        raise MalformedFrame(f"field {key!r} must be a number")
    return float(value)


def fixed_bin(m: dict[Any, Any], key: str, length: int) -> bytes:
    """Exactly ``length`` bytes of bin (a key, a nonce, a signature)."""
    value = field(m, key)
    if not isinstance(value, bytes) or len(value) != length:
        raise MalformedFrame(f"field {key!r} must be {length} bytes of bin")
    return value


def blob(m: dict[Any, Any], key: str, max_bytes: int) -> bytes:
    """1..``max_bytes`` bytes of bin."""
    value = field(m, key)
    if not isinstance(value, bytes) or not 1 <= len(value) <= max_bytes:
        raise MalformedFrame(f"field {key!r} must be 1..{max_bytes} bytes of bin")
    return value


def features(m: dict[Any, Any]) -> tuple[str, ...]:
    """The optional ``features`` list: at most MAX_FEATURES names of 1..MAX_FEATURE_CHARS."""
    value = m.get("features")
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_FEATURES:
        raise MalformedFrame(f"field 'features' must be an array of at most {MAX_FEATURES}")
    for name in value:
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_FEATURE_CHARS:
            raise MalformedFrame(
                f"every entry of 'features' must be a string of 1..{MAX_FEATURE_CHARS} characters"
            )
    return tuple(value)
