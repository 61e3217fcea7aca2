"""State vectors: which (client, clock) prefix of each writer a replica holds.

Codec for the Yrs v1 encoding (what ``Doc.get_state()`` returns and
``Doc.get_update(state)`` takes): ``varuint n``, then ``n`` pairs of
``varuint client, varuint clock``. Pure functions over ``dict[int, int]``.
"""

from __future__ import annotations

from edgeswarm.state.errors import MalformedStateVector

__all__ = ["decode_state_vector", "encode_state_vector", "merge_state_vectors", "missing_from"]

_MAX_VARUINT_BYTES = 10
_MAX_ENTRIES = 1 << 20


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
    """Every varuint in ``data``, in one pass."""
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
    vector: dict[int, int] = {}
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
