"""Append-only payload segment files: bytes written once, beside a SQLite index.

Key-value separation (the WiscKey / RocksDB BlobDB design): the gateway's
observation log (``gateway/log/``) and the edge's spool (``edge/spool.py``)
keep payloads out of SQLite. Each payload is written once, appended to a
segment file; SQLite holds one small index row per payload (segment, offset,
length, checksum) and is the commit point. A segment file is payloads back
to back, nothing else: only the index rows say where one payload ends and
the next begins.

Naming. The segments of ``NAME.db`` live in the directory ``NAME.db-segments/``
(:func:`segment_dir`), numbered from 1 with twelve digits:
``000000000001.seg``, ``000000000002.seg``, ... Only the newest is appended to.

Rollover. A group commit's payloads go to one segment with one ``writev``; a
group starts a new segment once the current one passed ``limit``, so a group
never spans two segments. With ``sync`` every append is ``fdatasync``-ed, and
the directory fsynced when a segment is created or removed, so that no
committed row can point at bytes less durable than itself.

Rewind. If a group fails, the segment is cut back to where the group started
(:meth:`SegmentFiles.rewind`); if even that fails, its bytes stay, referenced
by no row, and appends go on after them. At open, the owner compares the
files with the ends its committed rows reference (:meth:`SegmentFiles.missing`
names rows whose bytes are gone), then :meth:`SegmentFiles.resume` cuts bytes
after the last referenced byte of the newest segment (a group killed between
``writev`` and COMMIT) and removes segment files newer than it (and, for an
owner that releases old segments, those no row references any more).

Page cache. With ``release_page_cache`` the appended bytes leave the page
cache once they are on disk (``page_cache.py``), off the writer's thread.

Release. An owner that deletes rows (the spool, once the gateway acknowledged
them) removes a whole segment once no committed row points into it
(:meth:`SegmentFiles.remove`), after the deletion committed.

One writer. Opening takes an exclusive ``flock`` on the segment directory
(two writers would append over each other): one owner per file. After open
only its writer appends; readers open their own read-only descriptors at
:meth:`SegmentFiles.path`.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
from pathlib import Path

from . import page_cache
from .page_cache import PageCacheRelease

__all__ = ["SegmentFiles", "fsync_dir", "segment_dir", "segment_path", "writev_all"]

logger = logging.getLogger("edgeswarm.storage")

_SEGMENT_NAME = re.compile(r"([0-9]{12})\.seg")


def segment_dir(database: Path) -> Path:
    """The segment directory of the index file ``database`` (``NAME.db-segments``)."""
    return database.with_name(database.name + "-segments")


def segment_path(directory: Path, number: int) -> Path:
    """The file of segment ``number`` in ``directory``."""
    return directory / f"{number:012d}.seg"


def _iov_max() -> int:
    """Most buffers one ``writev`` takes (POSIX guarantees at least 16)."""
    try:
        value = os.sysconf("SC_IOV_MAX")
    except (ValueError, OSError):
        return 16
    return value if value > 0 else 16


_IOV_MAX = _iov_max()


def writev_all(fd: int, buffers: list[bytes]) -> int:
    """Write ``buffers`` back to back; bytes written.

    One ``os.writev`` per ``IOV_MAX`` buffers; more only after a short write.
    """
    pending: list[bytes | memoryview] = [b for b in buffers if b]
    total = 0
    while pending:
        batch = pending[:_IOV_MAX]
        written = os.writev(fd, batch)
        if written <= 0:
            raise OSError(errno.EIO, "writev wrote nothing")
        total += written
        done = 0
        for buffer in batch:
            if written < len(buffer):
                break
            written -= len(buffer)
            done += 1
        del pending[:done]
        if written:
            pending[0] = memoryview(pending[0])[written:]
    return total


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (new, removed files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentFiles:
    """The payload segments of one index: ``NNNNNNNNNNNN.seg`` in one directory.

    Opening creates the directory and takes an exclusive ``flock`` on it (two
    writers would append over each other). After open only the writer thread
    appends, always to the newest segment; readers open their own read-only
    descriptors at :meth:`path`.
    """

    def __init__(
        self, directory: Path, *, limit: int, sync: bool, release_page_cache: bool = False
    ) -> None:
        """``release_page_cache``: appended bytes leave the page cache once on disk
        (``page_cache.py``; for write-once segments read rarely, the gateway's log)."""
        self.directory = directory
        self.limit = limit
        """Size past which the next group starts a new segment."""
        self.sync = sync
        """``fsync=always``: fdatasync every append, fsync the directory for new files."""
        self.number = 0
        """The segment appended to (0: none yet)."""
        self.size = 0
        """Its size: committed bytes, plus those of the group being written."""
        self._fd: int | None = None
        self._release: PageCacheRelease | None = None
        try:
            directory.mkdir()
        except FileExistsError:
            pass
        else:
            if sync:
                fsync_dir(directory.parent)
        self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._dir_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._dir_fd)
            raise
        if release_page_cache and page_cache.supported():
            self._release = PageCacheRelease(thread_name=f"page-release:{directory.name}")

    @property
    def descriptor(self) -> int | None:
        """The descriptor of the segment being appended to (None: none yet)."""
        return self._fd

    def path(self, number: int) -> Path:
        """The file of segment ``number``."""
        return segment_path(self.directory, number)

    def sizes(self) -> dict[int, int]:
        """Number -> size of every segment file in the directory."""
        sizes = {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                match = _SEGMENT_NAME.fullmatch(entry.name)
                if match is not None and entry.is_file(follow_symlinks=False):
                    sizes[int(match[1])] = entry.stat(follow_symlinks=False).st_size
        return sizes

    def missing(self, ends: dict[int, int], sizes: dict[int, int]) -> dict[int, int | None]:
        """Segments shorter than the ``ends`` their rows reference (number -> size, None when
        the file is gone): those rows' bytes are lost."""
        return {s: sizes.get(s) for s, end in ends.items() if sizes.get(s, -1) < end}

    def resume(
        self,
        number: int,
        end: int,
        sizes: dict[int, int],
        *,
        sync: bool,
        keep: set[int] | None = None,
    ) -> int:
        """Open: append after byte ``end`` of segment ``number`` (0: none).

        Removes the segments after it (and, when ``keep`` is given, the older ones
        not in it: released segments whose removal a crash interrupted) and cuts
        it to ``end``; with ``sync``, makes that durable. Returns the bytes dropped.
        """
        dropped = 0
        for other, size in sizes.items():
            if other > number or (keep is not None and other < number and other not in keep):
                os.unlink(self.path(other))
                dropped += size
        if number:
            fd = os.open(self.path(number), os.O_WRONLY | os.O_APPEND)
            try:
                size = os.fstat(fd).st_size
                if size > end:
                    os.ftruncate(fd, end)
                    dropped += size - end
                    if sync:
                        os.fdatasync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd, self.number, self.size = fd, number, end
        if dropped and sync:
            os.fsync(self._dir_fd)
        return dropped

    def start_group(self) -> tuple[int, int]:
        """Segment and offset where the next group's payloads go.

        Starts a new segment if there is none yet or the current one passed
        :attr:`limit` (a group never spans two segments).
        """
        if self._fd is None or self.size >= self.limit:
            number = self.number + 1
            # A file of that number can only be bytes no row references (open
            # removed everything after the newest referenced segment): start empty.
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
            fd = os.open(self.path(number), flags, 0o600)
            try:
                if self.sync:  # its name is durable before any commit points into it
                    os.fsync(self._dir_fd)
            except BaseException:
                os.close(fd)
                raise
            if self._fd is not None:
                os.close(self._fd)
            self._fd, self.number, self.size = fd, number, 0
        return self.number, self.size

    def append(self, payloads: list[bytes]) -> None:
        """Append ``payloads`` back to back after :meth:`start_group` (one ``writev``);
        with :attr:`sync`, they are on stable storage when this returns."""
        if self._fd is None:
            raise RuntimeError("append before start_group")
        written = writev_all(self._fd, payloads)
        if self.sync:
            os.fdatasync(self._fd)
        self.size += written
        if self._release is not None:
            self._release.appended(self.number, self._fd, self.size)

    def release_counts(self) -> tuple[int, int]:
        """(bytes released from the page cache, failed releases); zeros when not asked."""
        return (0, 0) if self._release is None else self._release.counts()

    def remove(self, number: int) -> None:
        """Delete segment ``number`` (no committed row points into it any more); never the
        one being appended to."""
        if number == self.number:
            raise ValueError(f"segment {number} is being appended to")
        try:
            os.unlink(self.path(number))
        except FileNotFoundError:
            return
        if self.sync:
            os.fsync(self._dir_fd)

    def rewind(self, size: int) -> None:
        """A group failed: cut the current segment back to ``size``, where it started."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, size)
            self.size = size
        except OSError as exc:
            # Its bytes stay, referenced by no row; appends go on after them.
            logger.warning(
                "segment not cut back",
                extra={"segment": str(self.path(self.number)), "error": str(exc)},
            )
            try:
                self.size = os.fstat(self._fd).st_size
            except OSError:  # size unknown: the next group starts a new segment
                os.close(self._fd)
                self._fd = None

    def close(self) -> None:
        """Close the segment being appended to and release the directory lock."""
        if self._release is not None:
            self._release.stop()
            self._release = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
