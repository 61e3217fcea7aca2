"""A payload's msgpack map, unpacked under hostile-input limits (pure functions).

Every limit is checked before the unpacker allocates: a map never needs many
keys, and no list (shape, edges) needs more entries than ``_MAX_ARRAY_LEN``.
Before WELCOME (nothing is authenticated yet) the limits are the handshake's:
:data:`PREAUTH_MAX_FRAME_BYTES` and a few keys and list entries
(``docs/protocol.md``, section 7).
"""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]

from .errors import MalformedFrame
from .fields import MAX_FEATURES
from .infer_codec import MAX_MODELS

__all__ = ["PREAUTH_MAX_FRAME_BYTES", "unpack_payload"]

PREAUTH_MAX_FRAME_BYTES = 48 * 1024
"""Largest payload either side accepts before WELCOME: the largest legal HELLO (a
4096-character join token, 32 features, 32 ``models`` of an inference node, every
character 4 bytes of UTF-8: about 41 KiB) fits; nothing before it needs more."""

# Before WELCOME: HELLO has a few keys, at most MAX_FEATURES features and MAX_MODELS models.
_MAX_MAP_LEN = 256
_MAX_ARRAY_LEN = 65536
_MAX_STR_BYTES = 1024 * 1024
_PREAUTH_MAX_MAP_LEN = 64
_PREAUTH_MAX_ARRAY_LEN = max(MAX_FEATURES, MAX_MODELS)


def unpack_payload(payload: bytes | memoryview, *, preauth: bool = False) -> dict[Any, Any]:
    """The msgpack map of ``payload``, unpacked with hostile-input limits.

    ``preauth``: the tighter limits of a frame received before WELCOME (section 7).
    """
    size = len(payload)
    if preauth and size > PREAUTH_MAX_FRAME_BYTES:
        raise MalformedFrame(f"{size} bytes before WELCOME, at most {PREAUTH_MAX_FRAME_BYTES}")
    try:
        obj = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=min(size, _MAX_STR_BYTES),
            max_bin_len=size,
            max_array_len=min(size, _PREAUTH_MAX_ARRAY_LEN if preauth else _MAX_ARRAY_LEN),
            max_map_len=min(size, _PREAUTH_MAX_MAP_LEN if preauth else _MAX_MAP_LEN),
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises many unrelated types on bad input
        raise MalformedFrame(f"payload is not valid msgpack: {type(exc).__name__}") from exc
    if not isinstance(obj, dict):
        raise MalformedFrame(f"payload is a {type(obj).__name__}, not a map")
    return obj
