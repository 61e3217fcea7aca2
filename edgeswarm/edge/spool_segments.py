"""Where the spool keeps its payload bytes: segment files, the newest payloads in memory,
and the syncs of ``--spool-fsync always`` on a thread of their own.

The spool (``spool.py``) writes each tick's batches as one group: their payloads
go back to back into the newest segment file with one ``writev``
(:meth:`SpoolSegments.write`, ``storage/segments.py``), then its SQLite index
commits one row per batch saying where they are. Nothing here is fsynced on
the calling (tick) thread:

- ``normal`` and ``off``: the writes go to the page cache; a batch written is
  sendable at once and survives ``kill -9`` of the edge.
- ``always``: a :class:`SegmentSyncer` thread ``fdatasync``-s the segments
  written (and fsyncs their directory and the index's WAL) after each group
  committed, then moves :attr:`SpoolSegments.durable_through` forward; the
  spool sends nothing above it. A batch is on stable storage before it leaves.

Recent payloads stay in memory (up to ``cache_bytes``, newest kept), so the
uplink sends them without reading the disk; a batch read back from a segment
(after a restart, or once it left the memory window) is checked against its
checksum by the spool before it is sent.

A segment is deleted as a whole once no row of the index points into it any
more (:meth:`SpoolSegments.release`, after the rows' deletion committed).
Not thread-safe apart from the syncer: used from the spool's thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from edgeswarm.storage import SegmentFiles, segment_dir

__all__ = ["DEFAULT_CACHE_BYTES", "DEFAULT_SEGMENT_BYTES", "SegmentSyncer", "SpoolSegments"]

logger = logging.getLogger("edgeswarm.edge")

DEFAULT_SEGMENT_BYTES = 8 << 20
"""Segment size past which the next group starts a new file (a few ticks of 100 000 agents:
acknowledged bytes are released soon after their ACK)."""
DEFAULT_CACHE_BYTES = 64 << 20
"""Payload bytes of the newest batches kept in memory (the gateway's window is ~21 MB)."""


class SegmentSyncer:
    """``always``: makes written groups durable off the tick thread, in order."""

    def __init__(self, directory: Path, wal: Path, on_durable: Callable[[int], None]) -> None:
        self._directory = directory
        self._wal = wal
        self._on_durable = on_durable
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._fds: dict[int, int] = {}  # segment -> a dup of its descriptor, to sync
        self._through = 0
        self._stop = False
        self.failures = 0
        """Sync rounds that failed (logged; retried with the next group)."""
        self._thread = threading.Thread(target=self._run, name="spool-sync", daemon=True)
        self._thread.start()

    def request(self, segment: int, fd: int, through: int) -> None:
        """The group up to seq ``through`` was written to ``segment`` (``fd``) and committed."""
        with self._lock:
            if segment not in self._fds:
                self._fds[segment] = os.dup(fd)
            self._through = max(self._through, through)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                fds, self._fds = self._fds, {}
                through = self._through
                stop = self._stop
            if fds or through:
                try:
                    for fd in fds.values():
                        os.fdatasync(fd)
                    directory = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY)
                    try:
                        os.fsync(directory)
                    finally:
                        os.close(directory)
                    with contextlib.suppress(FileNotFoundError):  # no WAL: nothing committed
                        wal = os.open(self._wal, os.O_RDONLY)
                        try:
                            os.fsync(wal)
                        finally:
                            os.close(wal)
                    self._on_durable(through)
                except OSError as exc:
                    self.failures += 1
                    logger.error(
                        "spool sync failed; batches wait to be sent until one succeeds",
                        extra={"spool_segments": str(self._directory), "error": str(exc)},
                    )
                    with self._lock:  # retry these with the next request
                        for segment, fd in fds.items():
                            if segment in self._fds:
                                os.close(fd)
                            else:
                                self._fds[segment] = fd
                        fds = {}
                for fd in fds.values():
                    os.close(fd)
            if stop:
                return

    def close(self) -> None:
        """Sync what was requested, then end the thread."""
        with self._lock:
            self._stop = True
        self._wake.set()
        self._thread.join()
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds = {}


class SpoolSegments:
    """The payload segments of one spool index, and its newest payloads in memory."""

    def __init__(
        self,
        index: Path,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        sync: bool = False,
        on_durable: Callable[[], None] | None = None,
    ) -> None:
        """Open (create) ``index``'s segment directory and lock it (``BlockingIOError``: another
        process has this spool open). ``sync``: the ``always`` policy (a syncer thread)."""
        self.directory = segment_dir(index)
        self.files = SegmentFiles(self.directory, limit=segment_bytes, sync=False)
        self.cache_bytes = cache_bytes
        self._cache: dict[int, bytes] = {}  # seq -> payload, oldest first
        self._cached = 0
        self._readers: dict[int, int] = {}  # segment -> read-only descriptor
        self._live: dict[int, int] = {}  # segment -> rows of the index pointing into it
        self._durable_lock = threading.Lock()
        self._durable_through: int | None = None if not sync else 0
        self._on_durable = on_durable
        self._syncer = (
            SegmentSyncer(self.directory, index.with_name(index.name + "-wal"), self._durable)
            if sync
            else None
        )

    # ------------------------------------------------------------------ opening

    def recover(self, ends: dict[int, int], rows: dict[int, int]) -> dict[int, int | None]:
        """Open: ``ends`` (segment -> last byte its rows reference), ``rows`` (segment ->
        how many). Returns the segments whose bytes are missing (number -> size, None:
        gone); cuts uncommitted bytes off the newest segment and removes files no row
        references (released before a crash could remove them, or written after the
        last commit)."""
        sizes = self.files.sizes()
        missing = self.files.missing(ends, sizes)
        sound = {s: min(end, sizes.get(s) or 0) if s in missing else end for s, end in ends.items()}
        newest = max(sound, default=0)
        self.files.resume(newest, sound.get(newest, 0), sizes, sync=False, keep=set(sound))
        self._live = dict(rows)
        return missing

    # ------------------------------------------------------------------ writing

    def write(self, group: list[tuple[int, bytes]]) -> tuple[int, list[int]]:
        """Append the payloads of ``group`` (``(seq, payload)``, in order) with one ``writev``;
        the segment and each payload's offset. Raises ``OSError`` (the segment is then
        cut back to where the group started)."""
        segment, start = self.files.start_group()
        try:
            self.files.append([payload for _, payload in group])
        except BaseException:
            self.files.rewind(start)
            raise
        offsets = []
        offset = start
        for seq, payload in group:
            offsets.append(offset)
            offset += len(payload)
            self._remember(seq, payload)
        self._live[segment] = self._live.get(segment, 0) + len(group)
        return segment, offsets

    def rewind_group(self, segment: int, offsets: list[int], seqs: list[int]) -> None:
        """The index did not commit the group just written: cut its bytes off again."""
        for seq in seqs:
            self.forget(seq)
        if offsets and segment == self.files.number:
            self.files.rewind(offsets[0])
        self._live[segment] = self._live.get(segment, 0) - len(seqs)

    def committed(self, through: int) -> None:
        """The index committed the groups up to seq ``through``: ``always`` syncs them."""
        if self._syncer is not None and self.files.number:
            fd = self.files.descriptor
            if fd is not None:
                self._syncer.request(self.files.number, fd, through)

    def _remember(self, seq: int, payload: bytes) -> None:
        self._cache[seq] = payload
        self._cached += len(payload)
        while self._cached > self.cache_bytes and self._cache:
            oldest = next(iter(self._cache))
            self._cached -= len(self._cache.pop(oldest))

    def forget(self, seq: int) -> None:
        """Batch ``seq`` is gone (acknowledged, dropped, quarantined): not kept in memory."""
        payload = self._cache.pop(seq, None)
        if payload is not None:
            self._cached -= len(payload)

    # ------------------------------------------------------------------ durability

    @property
    def durable_through(self) -> int | None:
        """``always``: highest seq on stable storage; None: every written batch may leave."""
        with self._durable_lock:
            return self._durable_through

    def _durable(self, through: int) -> None:
        with self._durable_lock:
            self._durable_through = through
        if self._on_durable is not None:
            self._on_durable()

    def set_on_durable(self, callback: Callable[[], None] | None) -> None:
        """Called (from the syncer thread) when :attr:`durable_through` moves."""
        self._on_durable = callback

    # ------------------------------------------------------------------ reading

    def read(self, seq: int, segment: int, offset: int, length: int) -> tuple[bytes, bool]:
        """The payload of ``seq``, and whether it came from disk (then check its checksum).
        Raises ``OSError``; a short read returns the bytes there are."""
        payload = self._cache.get(seq)
        if payload is not None:
            return payload, False
        fd = self._readers.get(segment)
        if fd is None:
            fd = os.open(self.files.path(segment), os.O_RDONLY)
            self._readers[segment] = fd
        return os.pread(fd, length, offset), True

    # ------------------------------------------------------------------ releasing

    def release(self, segments: dict[int, int]) -> None:
        """Rows pointing into these segments (number -> how many) were deleted and the
        deletion committed: delete every segment no row points into any more."""
        for segment, gone in segments.items():
            self._live[segment] = self._live.get(segment, 0) - gone
        self.release_empty()

    def release_empty(self) -> None:
        """Delete every segment, other than the one being appended to, that no row needs."""
        for segment in [s for s, n in self._live.items() if n <= 0 and s != self.files.number]:
            del self._live[segment]
            fd = self._readers.pop(segment, None)
            if fd is not None:
                os.close(fd)
            try:
                self.files.remove(segment)
            except OSError as exc:  # it stays; removed at the next open
                logger.warning(
                    "released spool segment not deleted",
                    extra={"segment": str(self.files.path(segment)), "error": str(exc)},
                )

    def close(self) -> None:
        """Sync what is due (``always``), close every descriptor, release the lock."""
        if self._syncer is not None:
            self._syncer.close()
        for fd in self._readers.values():
            os.close(fd)
        self._readers.clear()
        self.files.close()
