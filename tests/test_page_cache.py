"""Written segment bytes leave the page cache once on disk (storage/page_cache.py).

Residency is read with ``fincore`` (util-linux, on every Debian machine): the
bytes of a file the kernel holds in its page cache.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edgeswarm.gateway.log import AppendResult, FsyncPolicy, LogRecord, ObservationLog
from edgeswarm.gateway.log.metrics import LogCollector
from edgeswarm.storage.page_cache import PageCacheRelease

MB = 1 << 20


def resident_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache."""
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip())


def eventually(predicate: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("fsync", [FsyncPolicy.NORMAL, FsyncPolicy.ALWAYS])
def test_the_gateway_log_keeps_what_it_wrote_out_of_the_page_cache(
    tmp_path: Path, fsync: FsyncPolicy
) -> None:
    """24 MB logged: the segment's pages leave the cache (all of them stayed, before), and
    every batch reads back intact from the disk."""
    payloads = [os.urandom(256 << 10) for _ in range(96)]
    outcomes: list[AppendResult | BaseException] = []
    done = threading.Event()

    def on_done(outcome: AppendResult | BaseException) -> None:
        outcomes.append(outcome)
        if len(outcomes) == len(payloads):
            done.set()

    with ObservationLog(tmp_path / "obs.db", fsync=fsync) as log:
        for seq, payload in enumerate(payloads, 1):
            log.submit(LogRecord("edge-a", seq, seq, 1, payload, 0.0), on_done)
        assert done.wait(30)
        assert all(isinstance(o, AppendResult) and o.applied for o in outcomes)
        segment = log.segment_dir / "000000000001.seg"
        size = segment.stat().st_size
        assert size == 24 * MB
        assert eventually(lambda: resident_bytes(segment) < size // 4), resident_bytes(segment)
        assert eventually(lambda: log.stats.page_cache_released_bytes >= size * 3 // 4)
        assert [r.payload for r in log.read("edge-a")] == payloads
        assert log.stats.failed_page_cache_releases == 0
        registry = CollectorRegistry()
        registry.register(LogCollector(log))
        released = registry.get_sample_value(
            "edgeswarm_gateway_log_page_cache_released_bytes_total"
        )
        assert released is not None
        assert released >= size * 3 // 4


def _write(path: Path, size: int) -> int:
    """A file of ``size`` random bytes written (dirty in the cache); its open descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.write(fd, os.urandom(size))
    return fd


def test_segments_no_longer_appended_to_are_released_and_closed(tmp_path: Path) -> None:
    """Three segments of 3 MB, rounds every 1 MB: all three leave the cache, and the thread
    keeps a descriptor only of the newest (until it stops)."""
    before = open_fds()
    release = PageCacheRelease(step_bytes=MB, idle_s=0.05)
    paths = [tmp_path / f"{n}.seg" for n in (1, 2, 3)]
    try:
        for number, path in enumerate(paths, 1):
            fd = _write(path, 3 * MB)
            release.appended(number, fd, 3 * MB)
            os.close(fd)
        assert eventually(lambda: all(resident_bytes(p) < MB for p in paths))
        assert eventually(lambda: open_fds() == before + 1)  # a dup of the newest segment's
        assert eventually(lambda: release.counts() == (9 * MB, 0))
    finally:
        release.stop()
    assert open_fds() == before


def test_bytes_below_a_step_are_released_once_the_writer_goes_idle(tmp_path: Path) -> None:
    release = PageCacheRelease(step_bytes=64 * MB, idle_s=0.05)
    try:
        fd = _write(tmp_path / "1.seg", 2 * MB)
        release.appended(1, fd, 2 * MB)  # far below a step: no round asked for yet
        fd2 = _write(tmp_path / "2.seg", 62 * MB)
        release.appended(2, fd2, 62 * MB)  # the step reached: rounds, then idle rounds
        for fd_ in (fd, fd2):
            os.close(fd_)
        assert eventually(lambda: resident_bytes(tmp_path / "1.seg") == 0)
        assert eventually(lambda: resident_bytes(tmp_path / "2.seg") < 8 * MB)
    finally:
        release.stop()


def test_a_failed_release_is_counted_logged_and_leaves_the_others_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The kernel refuses advice on a pipe (ESPIPE): that segment is dropped from the
    thread's work for good, logged and counted once; a file next to it is still released."""
    read_end, write_end = os.pipe()
    release = PageCacheRelease(step_bytes=MB, idle_s=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="edgeswarm.storage"):
            release.appended(1, write_end, 2 * MB)
            assert eventually(lambda: release.counts()[1] == 1)
            release.appended(1, write_end, 4 * MB)  # that segment is left alone from now on
            fd = _write(tmp_path / "2.seg", 4 * MB)
            release.appended(2, fd, 4 * MB)
            os.close(fd)
            assert eventually(lambda: resident_bytes(tmp_path / "2.seg") < MB)
        assert eventually(lambda: release.counts() == (4 * MB, 1))
        refusals = [r for r in caplog.records if "cannot release segment pages" in r.getMessage()]
        assert len(refusals) == 1
    finally:
        release.stop()
        os.close(read_end)
        os.close(write_end)


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="step_bytes"):
        PageCacheRelease(step_bytes=0)
    with pytest.raises(ValueError, match="idle_s"):
        PageCacheRelease(idle_s=0)
