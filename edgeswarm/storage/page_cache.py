"""Segment bytes out of the page cache once they are on disk, off the commit path.

A segment of the gateway's observation log is written once and read rarely (an
export, a scrub, a replay). Left alone, the kernel keeps every byte the log
ever wrote in the page cache until memory runs short, so the log grows into
memory as fast as it takes batches (a busy gateway: ~150 MB/s) and pushes
out pages worth keeping. PostgreSQL drops its WAL segments from the cache for
the same reason (``posix_fadvise(POSIX_FADV_DONTNEED)``).

On a VM whose host takes back the guest's free memory (virtio-balloon free
page reporting, as on the machines the benchmarks run on), each page of
cache the log grows into is also memory the host must hand back first:
writing into never-used cache measured 0.4 GB/s there against 5.5 GB/s into
recycled pages, and the gateway spent a third of its CPU time in ``writev``
(``docs/benchmarks.md``).

How. ``POSIX_FADV_DONTNEED`` drops the clean pages of a range and starts the
writeback of its dirty ones (under ``fsync=normal`` the bytes just appended are
dirty). A :class:`PageCacheRelease` thread advises each range three times, at
three rounds: the first starts the writeback, the later ones drop the
pages once it finished. A round runs each time the writer appended
``step_bytes`` more (over all segments: one that is no longer appended to
has its last rounds with the next one's), and every ``idle_s`` while bytes
wait for passes; with nothing to do, the thread sleeps until the next append.
It runs at nice 19, like the checkpointer, so that it never takes a core
from the event loop or the writer. Only the page cache
changes: the bytes are on disk or on their way there, and a later read
gets them from the disk. A failed call is logged and counted and leaves the
pages where they are.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

from .checkpoint import lower_thread_priority

__all__ = ["DEFAULT_RELEASE_STEP", "PageCacheRelease", "supported"]

logger = logging.getLogger("edgeswarm.storage")

DEFAULT_RELEASE_STEP = 4 << 20
"""Bytes appended between two rounds."""

_PASSES = 3


def supported() -> bool:
    """Whether this platform can advise the kernel (Linux and most Unixes; not macOS)."""
    return hasattr(os, "posix_fadvise")


@dataclass
class _Segment:
    fd: int
    """A duplicate of the writer's descriptor, owned by the thread."""
    size: int = 0
    """Bytes appended so far."""
    ends: list[int] = field(default_factory=list)
    """The sizes at the last rounds: bytes below ``ends[0]`` had all their passes."""

    @property
    def start(self) -> int:
        """Where the next round's range begins."""
        return self.ends[0] if len(self.ends) == _PASSES else 0

    @property
    def done(self) -> bool:
        return self.start >= self.size


class PageCacheRelease:
    """A thread that takes a writer's appended segment bytes out of the page cache."""

    def __init__(
        self,
        *,
        step_bytes: int = DEFAULT_RELEASE_STEP,
        idle_s: float = 0.5,
        thread_name: str = "page-release",
    ) -> None:
        if step_bytes < 1 or idle_s <= 0:
            raise ValueError("step_bytes must be >= 1 and idle_s > 0")
        self.step_bytes = step_bytes
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._segments: dict[int, _Segment] = {}
        """Segment number -> state; the newest is the one appended to."""
        self._since_round = 0
        """Bytes appended since the last round was asked for."""
        self._refused: set[int] = set()
        """Segments the kernel refused to advise on: left alone from then on (one log line)."""
        self._parked = True
        """The thread waits with nothing left to do: the next append wakes it."""
        self._stop = False
        self.released_bytes = 0
        """Bytes that had their last pass."""
        self.failures = 0
        """Calls that failed (those segments' pages stay cached)."""
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    def appended(self, number: int, fd: int, size: int) -> None:
        """Writer, after an append: segment ``number`` (open as ``fd``) is ``size`` bytes."""
        with self._lock:
            if number in self._refused:
                return
            segment = self._segments.get(number)
            if segment is None:
                segment = self._segments[number] = _Segment(os.dup(fd))
            self._since_round += max(0, size - segment.size)
            segment.size = size
            due = self._since_round >= self.step_bytes or self._parked
            if due:
                self._since_round = 0
                self._parked = False
        if due:
            self._wake.set()

    def counts(self) -> tuple[int, int]:
        """(released_bytes, failures), read together."""
        with self._lock:
            return self.released_bytes, self.failures

    def stop(self) -> None:
        """End the thread and close its descriptors; pages not yet released stay cached."""
        with self._lock:
            self._stop = True
        self._wake.set()
        self._thread.join()
        for segment in self._segments.values():
            os.close(segment.fd)
        self._segments.clear()

    def _run(self) -> None:
        lower_thread_priority()
        while True:
            with self._lock:
                parked = self._parked
            self._wake.wait(timeout=None if parked else self.idle_s)
            self._wake.clear()
            with self._lock:
                if self._stop:
                    return
                work = [(n, s.fd, s.start, s.size) for n, s in self._segments.items()]
            results = [
                (n, start, size, self._advise(fd, start, size)) for n, fd, start, size in work
            ]
            self._finish_round(results)

    def _advise(self, fd: int, start: int, end: int) -> OSError | None:
        if end <= start:
            return None
        try:
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_DONTNEED)
        except OSError as exc:
            return exc
        return None

    def _finish_round(self, results: list[tuple[int, int, int, OSError | None]]) -> None:
        """Record a round; park when no bytes wait for passes any more."""
        with self._lock:
            newest = max(self._segments, default=0)
            for number, start, size, error in results:
                segment = self._segments[number]
                if error is not None:
                    self.failures += 1
                    logger.warning(
                        "cannot release segment pages from the page cache; they stay cached",
                        extra={"segment": number, "error": str(error)},
                    )
                    self._refused.add(number)
                    del self._segments[number]
                    os.close(segment.fd)
                    continue
                segment.ends.append(size)
                if len(segment.ends) > _PASSES:
                    segment.ends.pop(0)
                self.released_bytes += segment.start - start
                if segment.done and number != newest:  # retired and released: forget it
                    del self._segments[number]
                    os.close(segment.fd)
            self._parked = all(s.done for s in self._segments.values())
