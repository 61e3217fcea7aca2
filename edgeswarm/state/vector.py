"""State vectors: which (client, clock) prefix of each writer a replica holds.

Codec for the Yrs v1 encoding (what ``Doc.get_state()`` returns and
``Doc.get_update(state)`` takes): ``varuint n``, then ``n`` pairs of
``varuint client, varuint clock``. Pure functions over ``dict[int, int]``.
"""

from __future__ import annotations

import numpy as np

from edgeswarm.state.errors import MalformedStateVector

__all__ = ["decode_state_vector", "encode_state_vector", "merge_state_vectors", "missing_from"]

_MAX_VARUINT_BYTES = 10
_MAX_ENTRIES = 1 << 20
_VECTORISE_BYTES = 256
"""Below this numpy's fixed cost exceeds the byte loop's."""


def _push_varuint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def encode_state_vector(vector: dict[int, int]) -> bytes:
    """Yrs v1 bytes of ``vector`` (client id -> next clock)."""
    out = bytearray()
    _push_varuint(out, len(vector))
    for client, clock in sorted(vector.items()):
        _push_varuint(out, client)
        _push_varuint(out, clock)
    return bytes(out)


def _varuints(data: bytes) -> list[int]:
    """Every varuint in ``data``, in one pass (vectorised past ``_VECTORISE_BYTES``;
    10-byte varuints the slow way)."""
    if len(data) < _VECTORISE_BYTES:
        return _varuints_slowly(data)
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw < 0x80)
    if ends.size == 0 or ends[-1] != raw.size - 1:
        if raw.size:
            raise MalformedStateVector("state vector ends inside a varuint")
        return []
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if int(lengths.max()) > 9:  # past 63 bits: Python integers
        return _varuints_slowly(data)
    shifts = (np.arange(raw.size) - np.repeat(starts, lengths)) * 7
    parts = (raw & 0x7F).astype(np.uint64) << shifts.astype(np.uint64)
    values: list[int] = np.bitwise_or.reduceat(parts, starts).tolist()
    return values


def _varuints_slowly(data: bytes) -> list[int]:
    """:func:`_varuints`, one byte at a time (values of any size up to 10 bytes)."""
    values: list[int] = []
    append = values.append
    value = shift = 0
    for byte in data:
        if byte < 0x80:
            append(value | (byte << shift))
            value = shift = 0
        else:
            value |= (byte & 0x7F) << shift
            shift += 7
            if shift > 7 * (_MAX_VARUINT_BYTES - 1):
                raise MalformedStateVector("varuint longer than 10 bytes")
    if shift:
        raise MalformedStateVector("state vector ends inside a varuint")
    return values


def decode_state_vector(data: bytes) -> dict[int, int]:
    """Client id -> next clock; :class:`MalformedStateVector` if ``data`` is not one."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedStateVector(f"state vector must be bytes, got {type(data).__name__}")
    values = _varuints(bytes(data))
    if not values:
        raise MalformedStateVector("empty state vector")
    count = values[0]
    if count > _MAX_ENTRIES or len(values) != 1 + 2 * count:
        raise MalformedStateVector(
            f"state vector claims {count} entries but holds {(len(values) - 1) / 2}"
        )
    vector = dict(zip(values[1::2], values[2::2], strict=True))
    if len(vector) == count:
        return vector
    vector = {}  # a client named twice: keep its highest clock
    for index in range(1, len(values), 2):
        client, clock = values[index], values[index + 1]
        if clock >= vector.get(client, 0):
            vector[client] = clock
    return vector


def merge_state_vectors(a: dict[int, int], b: dict[int, int]) -> dict[int, int]:
    """Per-client maximum of two state vectors."""
    merged = dict(a)
    for client, clock in b.items():
        if clock > merged.get(client, 0):
            merged[client] = clock
    return merged


def missing_from(have: dict[int, int], want: dict[int, int]) -> bool:
    """Whether ``want`` holds anything that ``have`` lacks."""
    return any(clock > have.get(client, 0) for client, clock in want.items())
