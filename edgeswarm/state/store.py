"""`StateStore`: a gateway's swarm state on disk, snapshot + update log.

Directory layout::

    snapshot.bin   MAGIC, then one record: the document's full update
    updates.log    MAGIC, then records, one per applied update

A record is ``u32 length | u32 crc32(payload) | payload`` (little endian).
Loading applies the snapshot, then replays the log. A log whose tail is cut
short or fails its crc (a crash mid-append) is truncated back to the last
good record; what was dropped is logged and reported in :class:`LoadReport`,
never raised. Compaction writes a new snapshot (temp file, fsync, rename,
fsync of the directory), then starts an empty log. Updates are idempotent,
so a crash between those two steps only replays updates the snapshot already
holds.

Files are created with mode 0600. Every failure to write them (a full disk,
an I/O error) is a :class:`StoreError` naming the file; the document in
memory keeps the update, and a peer that sent it sends it again at its next
sync (state vectors), so nothing is lost unless the process stops meanwhile.

fsync policy (:data:`StoreFsyncPolicy`): ``"always"`` fsyncs every append (an
update is durable before it is acknowledged), ``"interval"`` at most every
``fsync_interval_s``, ``"never"`` leaves it to the OS. With anything but
``"always"``, a crash may lose the gateway's own latest writes, which peers
may already hold: restart it with a new incarnation
(:func:`~edgeswarm.state.schema.client_id_for`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from edgeswarm.resource import Resource
from edgeswarm.state.document import SwarmDocument
from edgeswarm.state.errors import MalformedUpdate, StoreError

__all__ = ["LoadReport", "StateStore", "StoreFsyncPolicy", "open_document"]

StoreFsyncPolicy = Literal["always", "interval", "never"]

SNAPSHOT_MAGIC = b"ESSTATE-SNAP-1\n\x00"
LOG_MAGIC = b"ESSTATE-LOG-1\n\x00\x00"
_HEADER = struct.Struct("<II")
_MAX_RECORD = 1 << 30

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadReport:
    """What :meth:`StateStore.load` found."""

    snapshot_bytes: int
    """Size of the snapshot's update (0 if there was none)."""
    records_replayed: int
    """Log records applied on top of the snapshot."""
    records_refused: int
    """Log records with a good crc whose update did not decode (skipped)."""
    dropped_bytes: int
    """Bytes cut off the end of the log (a torn or corrupt tail)."""
    drop_reason: str | None
    """Why they were cut, or None."""


def _record(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _read_records(data: bytes, start: int) -> tuple[list[bytes], int, str | None]:
    """Good records from ``start``, the offset after the last good one, why it stopped."""
    records: list[bytes] = []
    pos = start
    while pos < len(data):
        if len(data) - pos < _HEADER.size:
            return records, pos, "truncated record header"
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > _MAX_RECORD or end > len(data):
            return records, pos, "truncated record payload"
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            return records, pos, "crc mismatch"
        records.append(payload)
        pos = end
    return records, pos, None


def _create_private(path: Path, flags: int) -> BinaryIO:
    """Open ``path`` for writing with ``flags`` (``O_APPEND``: at its end), creating it
    with mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
    return os.fdopen(fd, "ab" if flags & os.O_APPEND else "wb")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateStore(Resource):
    """Snapshot + update log of one document in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: StoreFsyncPolicy = "always",
        fsync_interval_s: float = 0.05,
        compact_after_bytes: int = 16 << 20,
    ) -> None:
        self.directory = Path(directory)
        """Where the files live (created if missing)."""
        self.fsync: StoreFsyncPolicy = fsync
        """When appends reach the disk."""
        self.fsync_interval_s = fsync_interval_s
        """Longest time between fsyncs under ``"interval"``."""
        self.compact_after_bytes = compact_after_bytes
        """Log size past which :attr:`needs_compaction` turns true."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.directory}: {exc}") from exc
        self._log: BinaryIO | None = None
        self._log_bytes = 0
        self._last_fsync = 0.0

    @property
    def snapshot_path(self) -> Path:
        return self.directory / "snapshot.bin"

    @property
    def log_path(self) -> Path:
        return self.directory / "updates.log"

    @property
    def needs_compaction(self) -> bool:
        """Whether the log has grown past ``compact_after_bytes``."""
        return self._log_bytes > self.compact_after_bytes

    def load(self, document: SwarmDocument) -> LoadReport:
        """Apply snapshot and log to ``document``; open the log for appends.

        A corrupt snapshot raises :class:`StoreError` (it was written
        atomically, so that is not a crash artefact); a corrupt log tail is
        truncated and reported.
        """
        snapshot_bytes = 0
        if self.snapshot_path.exists():
            data = self.snapshot_path.read_bytes()
            records, _, why = _read_records(data, len(SNAPSHOT_MAGIC))
            if not data.startswith(SNAPSHOT_MAGIC) or why is not None or len(records) != 1:
                raise StoreError(f"snapshot {self.snapshot_path} is corrupt ({why or 'layout'})")
            try:
                document.apply_update(records[0])
            except MalformedUpdate as exc:
                raise StoreError(f"snapshot {self.snapshot_path} does not decode: {exc}") from exc
            snapshot_bytes = len(records[0])

        replayed = refused = dropped = 0
        reason: str | None = None
        if self.log_path.exists():
            data = self.log_path.read_bytes()
            if not data.startswith(LOG_MAGIC):
                records, good_end, reason = [], 0, "bad log header"
            else:
                records, good_end, reason = _read_records(data, len(LOG_MAGIC))
            for payload in records:
                try:
                    document.apply_update(payload)
                    replayed += 1
                except MalformedUpdate:
                    refused += 1
            dropped = len(data) - good_end
            if dropped:
                logger.warning(
                    "state log %s: dropped %d bytes at offset %d (%s)",
                    self.log_path,
                    dropped,
                    good_end,
                    reason,
                )
                with self.log_path.open("r+b") as handle:
                    handle.truncate(good_end)
                    handle.flush()
                    os.fsync(handle.fileno())
        self._open_log()
        return LoadReport(snapshot_bytes, replayed, refused, dropped, reason if dropped else None)

    def _open_log(self) -> None:
        if self._log is not None:
            return
        try:
            log = _create_private(self.log_path, os.O_APPEND)
            if log.tell() == 0:
                log.write(LOG_MAGIC)
                log.flush()
                os.fsync(log.fileno())
        except OSError as exc:
            raise StoreError(f"cannot open {self.log_path}: {exc.strerror}") from exc
        self._log = log
        self._log_bytes = log.tell()

    def append(self, update: bytes) -> None:
        """Log one applied update (durable on return under ``fsync="always"``)."""
        self._open_log()
        assert self._log is not None
        record = _record(update)
        try:
            self._log.write(record)
            self._log.flush()
            if self.fsync == "always":
                os.fsync(self._log.fileno())
            elif self.fsync == "interval":
                now = time.monotonic()
                if now - self._last_fsync >= self.fsync_interval_s:
                    os.fsync(self._log.fileno())
                    self._last_fsync = now
        except OSError as exc:
            self._cut_back()  # no torn record stays in front of the next ones
            raise StoreError(f"cannot append to {self.log_path}: {exc.strerror}") from exc
        self._log_bytes += len(record)

    def _cut_back(self) -> None:
        """After a failed append: drop what part of the record reached the file."""
        log, self._log = self._log, None
        if log is None:
            return
        with contextlib.suppress(OSError):
            log.close()  # the buffered rest is lost with it
        with contextlib.suppress(OSError):
            os.truncate(self.log_path, self._log_bytes)

    def compact(self, document: SwarmDocument) -> None:
        """Write ``document`` as the new snapshot and start an empty log.

        Raises :class:`StoreError`; the old snapshot and log then stay as they were.
        """
        temp = self.directory / "snapshot.bin.tmp"
        fresh = self.directory / "updates.log.tmp"
        try:
            with _create_private(temp, os.O_TRUNC) as handle:
                handle.write(SNAPSHOT_MAGIC + _record(document.encode_update()))
                handle.flush()
                os.fsync(handle.fileno())
            with _create_private(fresh, os.O_TRUNC) as handle:
                handle.write(LOG_MAGIC)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.snapshot_path)
            _fsync_dir(self.directory)
            if self._log is not None:
                self._log.close()
                self._log = None
            os.replace(fresh, self.log_path)
            _fsync_dir(self.directory)
        except OSError as exc:
            for leftover in (temp, fresh):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise StoreError(f"cannot compact into {self.snapshot_path}: {exc.strerror}") from exc
        self._open_log()

    def close(self) -> None:
        """Flush and close the log. Raises :class:`StoreError` (the log is closed anyway)."""
        log, self._log = self._log, None
        if log is None:
            return
        try:
            log.flush()
            if self.fsync != "never":
                os.fsync(log.fileno())
        except OSError as exc:
            raise StoreError(f"cannot flush {self.log_path}: {exc.strerror}") from exc
        finally:
            with contextlib.suppress(OSError):
                log.close()


def open_document(
    directory: Path, writer_id: str, *, fsync: StoreFsyncPolicy = "interval"
) -> tuple[SwarmDocument, StateStore, LoadReport]:
    """``writer_id``'s document persisted in ``directory``, loaded, with a fresh incarnation.

    Every open writes as a new incarnation (``incarnation`` file: previous + 1,
    random when the file is missing), so a process that lost the tail of its
    log in a crash, or its whole directory, never reuses (client id, clock)
    pairs its peers already hold (see :class:`~edgeswarm.state.errors.WriterReused`).
    The cost is one more writer entry per restart.
    """
    store = StateStore(directory, fsync=fsync)
    path = store.directory / "incarnation"
    try:
        incarnation = int(path.read_text().strip()) + 1
    except (OSError, ValueError):
        incarnation = int.from_bytes(os.urandom(4), "little")
    temp = path.with_suffix(".tmp")
    try:
        with _create_private(temp, os.O_TRUNC) as handle:
            handle.write(f"{incarnation}\n".encode())
        os.replace(temp, path)
    except OSError as exc:
        store.close()
        raise StoreError(f"cannot write {path}: {exc}") from exc
    document = SwarmDocument(writer_id, incarnation=incarnation)
    try:
        report = store.load(document)
    except BaseException:
        store.close()
        raise
    return document, store, report
