"""Payload segment files shared by the gateway's log and the edge's spool (storage/segments)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeswarm.storage import segments
from edgeswarm.storage.segments import SegmentFiles, writev_all


def _payloads(count: int, size: int = 10) -> list[bytes]:
    return [bytes([i % 251]) * size for i in range(count)]


def test_writev_all_writes_more_buffers_than_one_call_takes(tmp_path: Path) -> None:
    payloads = [*_payloads(3 * segments._IOV_MAX + 5), b"", *_payloads(2)]
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert writev_all(fd, payloads) == sum(map(len, payloads))
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"".join(payloads)


def test_writev_all_resumes_after_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real short write (a signal, a full disk's last bytes): the rest follows in order."""
    real = os.writev

    def short_writev(fd: int, buffers: list[bytes | memoryview]) -> int:
        first = bytes(buffers[0])
        return real(fd, [first[: max(1, len(first) // 3)]])

    monkeypatch.setattr(os, "writev", short_writev)
    payloads = _payloads(7, size=9)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        assert writev_all(fd, payloads) == 63
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"".join(payloads)


def test_writev_all_refuses_a_write_of_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "writev", lambda fd, buffers: 0)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError, match="wrote nothing"):
            writev_all(fd, [b"x"])
    finally:
        os.close(fd)


@pytest.mark.parametrize("sync", [False, True], ids=["no-sync", "sync"])
def test_groups_segments_removal_and_rewind(tmp_path: Path, sync: bool) -> None:
    files = SegmentFiles(tmp_path / "segs", limit=25, sync=sync)
    with pytest.raises(RuntimeError, match="before start_group"):
        files.append([b"x"])
    files.rewind(0)  # nothing open yet: nothing to cut
    assert files.start_group() == (1, 0)
    files.append(_payloads(2))
    assert files.start_group() == (1, 20)  # below the limit: same segment
    files.append(_payloads(1))
    assert files.start_group() == (2, 0)  # past it: a group never spans two segments
    files.append(_payloads(1, size=7))
    files.rewind(3)  # the group failed: cut back to where it started
    assert files.sizes() == {1: 30, 2: 3}
    with pytest.raises(ValueError, match="being appended to"):
        files.remove(2)
    files.remove(1)
    files.remove(1)  # already gone: nothing to do
    assert files.sizes() == {2: 3}
    assert files.missing({2: 5, 3: 1}, files.sizes()) == {2: 3, 3: None}


def test_a_second_writer_on_one_directory_is_refused(tmp_path: Path) -> None:
    first = SegmentFiles(tmp_path / "segs", limit=100, sync=False)
    with pytest.raises(BlockingIOError):  # flock LOCK_NB: held by the first
        SegmentFiles(tmp_path / "segs", limit=100, sync=False)
    first.close()
    SegmentFiles(tmp_path / "segs", limit=100, sync=False).close()  # free again
