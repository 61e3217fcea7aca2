"""Frames on the session stream: a 4-byte big-endian length, then the payload.

:func:`encode_prefix` writes the prefix; :class:`FrameReader` reassembles
payloads from the bytes of a stream, sans-I/O. ``docs/protocol.md``, section 3.
"""

from __future__ import annotations

import struct

from .errors import FrameTooLarge, LocalProtocolError

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "MAX_PREFIX_VALUE",
    "PREFIX_BYTES",
    "FrameReader",
    "encode_prefix",
]

DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
"""Default largest payload, in bytes, a receiver accepts."""
PREFIX_BYTES = 4
"""Size of the big-endian length prefix."""
MAX_PREFIX_VALUE = 2**32 - 1
"""Largest payload length the prefix can express."""

_PREFIX = struct.Struct(">I")


def encode_prefix(length: int) -> bytes:
    """The 4-byte length prefix of a payload of ``length`` bytes."""
    if not 0 <= length <= MAX_PREFIX_VALUE:
        raise LocalProtocolError(f"payload of {length} bytes cannot be framed")
    return _PREFIX.pack(length)


class FrameReader:
    """Reassembles length-prefixed payloads from a byte stream (sans-I/O).

    Bytes go in with ``feed``; complete payloads come out of ``next_payload``.
    The buffer is consumed through an offset and compacted lazily, so neither
    many small frames nor one big frame in many chunks cost quadratic time.
    """

    _COMPACT_AT = 64 * 1024

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        """Largest payload accepted; a larger prefix raises ``FrameTooLarge``."""
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as payloads."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes."""
        if self._pos and self._pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        self._buf += data

    def next_payload(self) -> bytes | None:
        """The next complete payload, or None until more bytes arrive.

        Raises ``FrameTooLarge`` (every time it is called) once a prefix
        announces more than ``max_frame_bytes``; the stream cannot be resynced.
        """
        start = self._pos
        end = len(self._buf)
        if end - start < PREFIX_BYTES:
            return None
        (length,) = _PREFIX.unpack_from(self._buf, start)
        if length > self.max_frame_bytes:
            raise FrameTooLarge(
                f"frame of {length} bytes announced, at most {self.max_frame_bytes} allowed"
            )
        stop = start + PREFIX_BYTES + length
        if stop > end:
            return None
        with memoryview(self._buf) as view, view[start + PREFIX_BYTES : stop] as part:
            payload = bytes(part)
        self._pos = stop
        if stop == end:
            self._buf.clear()
            self._pos = 0
        elif stop >= self._COMPACT_AT and stop * 2 >= end:
            del self._buf[:stop]
            self._pos = 0
        return payload
