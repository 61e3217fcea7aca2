"""Fetching a blob by digest in chunks, resumable after a disconnect (sans-I/O plus one file).

An edge fetches a module's bytes from its gateway one chunk at a time. A
:class:`BlobFetch` says which chunk to ask for next (:meth:`BlobFetch.next_request`),
takes each chunk in (:meth:`BlobFetch.receive`) and appends it to a ``.part``
file, so that after a disconnect a new :class:`BlobFetch` over the same file
asks only for what is missing. When the last byte arrived the whole file is
checked against the digest: a match is renamed to its final name
(:meth:`BlobCache.path`), a mismatch deletes the part (the next fetch starts
over) and raises :class:`DigestMismatchError`.

Rules (the sender is not trusted):

1. a chunk must start exactly where the part ends, be non-empty, and not run
   past the announced size: else :class:`FetchError`, nothing appended;
2. a chunk for another digest is a :class:`FetchError`;
3. the size is the manifest's (signed), never the sender's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .errors import DigestMismatchError, FetchError
from .manifest import DIGEST_PATTERN

DEFAULT_CHUNK_BYTES: Final = 256 * 1024
"""Bytes asked for per chunk (well under a frame's size limit)."""


@dataclass(frozen=True)
class ChunkRequest:
    """Ask for ``length`` bytes of blob ``digest`` from ``offset``."""

    digest: str
    offset: int
    length: int


class BlobCache:
    """Content-addressed files: ``<dir>/sha256-<hex>.wasm``, verified before they are named."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, digest: str) -> Path:
        if not DIGEST_PATTERN.fullmatch(digest):
            raise FetchError(f"not a sha256 digest: {digest!r}")
        return self.directory / f"{digest.replace(':', '-')}.wasm"

    def part_path(self, digest: str) -> Path:
        return self.path(digest).with_suffix(".part")

    def get(self, digest: str) -> bytes | None:
        """The bytes of ``digest`` if the cache holds them intact (a damaged file is removed)."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            path.unlink(missing_ok=True)
            return None
        return data

    def fetch(self, digest: str, size: int, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> BlobFetch:
        """A fetch of ``digest`` (``size`` bytes, from its signed manifest) into this cache."""
        return BlobFetch(self, digest, size, chunk_bytes=chunk_bytes)


class BlobFetch:
    """One blob on its way in; survives a disconnect through its ``.part`` file."""

    def __init__(self, cache: BlobCache, digest: str, size: int, *, chunk_bytes: int) -> None:
        if size < 0 or chunk_bytes < 1:
            raise ValueError("size must not be negative, chunk_bytes must be positive")
        self.cache = cache
        self.digest = digest
        self.size = size
        self.chunk_bytes = chunk_bytes
        self.part = cache.part_path(digest)
        cache.directory.mkdir(parents=True, exist_ok=True)
        try:
            self.received = self.part.stat().st_size
        except FileNotFoundError:
            self.received = 0
        if self.received > size:  # a part longer than the blob can only be garbage
            self.part.unlink()
            self.received = 0
        self.resumed_from = self.received
        """Bytes already on disk when this fetch started (non-zero: it resumed)."""

    @property
    def complete(self) -> bool:
        return self.received == self.size

    def next_request(self) -> ChunkRequest | None:
        """The next chunk to ask for, or None when every byte is here."""
        if self.complete:
            return None
        length = min(self.chunk_bytes, self.size - self.received)
        return ChunkRequest(self.digest, self.received, length)

    def receive(self, digest: str, offset: int, data: bytes) -> bool:
        """Append one chunk; whether the blob is complete (then :meth:`finish` it)."""
        if digest != self.digest:
            raise FetchError(f"a chunk of {digest} arrived for the fetch of {self.digest}")
        if offset != self.received or not data or offset + len(data) > self.size:
            raise FetchError(
                f"chunk of {self.digest} at {offset} (+{len(data)}) does not follow the "
                f"{self.received} of {self.size} bytes received"
            )
        with self.part.open("ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self.received += len(data)
        return self.complete

    def finish(self) -> bytes:
        """The verified bytes, now in the cache under their digest.

        A mismatch removes the part (the next fetch starts over) and raises
        :class:`DigestMismatchError`.
        """
        if not self.complete:
            raise FetchError(f"{self.digest}: {self.received} of {self.size} bytes received")
        data = self.part.read_bytes() if self.size else b""
        found = "sha256:" + hashlib.sha256(data).hexdigest()
        if found != self.digest:
            with contextlib.suppress(FileNotFoundError):
                self.part.unlink()
            raise DigestMismatchError(
                f"fetched blob is {found}, expected {self.digest}: discarded, fetch it again"
            )
        if self.size:
            os.replace(self.part, self.cache.path(self.digest))
        else:
            self.cache.path(self.digest).write_bytes(b"")
        return data
