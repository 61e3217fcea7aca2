"""Fetching a module blob in chunks: resumable after a disconnect, verified, tamper refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeswarm.registry import DigestMismatchError, FetchError, blob_digest
from edgeswarm.registry.fetch import BlobCache
from tests.registry_fixtures import FLOCKING

CHUNK = 256


def serve(blob: bytes, offset: int, length: int) -> bytes:
    """What an honest sender answers."""
    return blob[offset : offset + length]


def test_fetch_in_chunks_resumes_after_a_disconnect(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "modules")
    digest = blob_digest(FLOCKING)
    first = cache.fetch(digest, len(FLOCKING), chunk_bytes=CHUNK)
    for _ in range(3):  # three chunks, then the connection drops
        request = first.next_request()
        assert request is not None
        first.receive(digest, request.offset, serve(FLOCKING, request.offset, request.length))
    # a new session: the fetch starts where the part file ends
    second = cache.fetch(digest, len(FLOCKING), chunk_bytes=CHUNK)
    assert second.resumed_from == 3 * CHUNK
    asked = []
    while (request := second.next_request()) is not None:
        asked.append(request.offset)
        second.receive(digest, request.offset, serve(FLOCKING, request.offset, request.length))
    assert asked[0] == 3 * CHUNK
    assert second.finish() == FLOCKING
    assert cache.get(digest) == FLOCKING
    assert not cache.part_path(digest).exists()


def test_tampered_chunk_fails_the_digest_and_is_discarded(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    digest = blob_digest(FLOCKING)
    tampered = bytearray(FLOCKING)
    tampered[100] ^= 0xFF
    fetch = cache.fetch(digest, len(FLOCKING), chunk_bytes=CHUNK)
    while (request := fetch.next_request()) is not None:
        fetch.receive(
            digest, request.offset, serve(bytes(tampered), request.offset, request.length)
        )
    with pytest.raises(DigestMismatchError, match="discarded"):
        fetch.finish()
    assert cache.get(digest) is None
    assert not cache.part_path(digest).exists()
    assert cache.fetch(digest, len(FLOCKING)).resumed_from == 0  # starts over


@pytest.mark.parametrize(
    ("offset", "data", "message"),
    [
        (CHUNK, b"x" * 10, "does not follow"),  # a gap
        (0, b"", "does not follow"),  # empty
        (0, b"x" * (len(FLOCKING) + 1), "does not follow"),  # past the signed size
    ],
)
def test_tamper_chunks_that_do_not_fit_are_refused_and_nothing_appended(
    tmp_path: Path, offset: int, data: bytes, message: str
) -> None:
    cache = BlobCache(tmp_path)
    digest = blob_digest(FLOCKING)
    fetch = cache.fetch(digest, len(FLOCKING), chunk_bytes=CHUNK)
    with pytest.raises(FetchError, match=message):
        fetch.receive(digest, offset, data)
    assert fetch.received == 0
    assert not cache.part_path(digest).exists() or cache.part_path(digest).stat().st_size == 0
    with pytest.raises(FetchError, match="arrived for"):
        fetch.receive(blob_digest(b"other"), 0, FLOCKING[:CHUNK])


def test_tampered_cache_file_is_not_served(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path)
    digest = blob_digest(FLOCKING)
    cache.path(digest).write_bytes(FLOCKING[:-1])
    assert cache.get(digest) is None
    assert not cache.path(digest).exists()
