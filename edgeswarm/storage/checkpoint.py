"""Checkpoints of a SQLite index in WAL mode, off the commit path.

Used by the gateway's observation log and the edge's spool. SQLite's
automatic checkpoint runs inside the COMMIT that crosses its threshold, so
one group would wait for the copy of the WAL into the database file and for
two fsyncs. The writer turns it off (``PRAGMA wal_autocheckpoint=0``); a :class:`Checkpointer`
thread with its own connection runs PASSIVE checkpoints when the writer asks
(every ``checkpoint_commits`` group commits), concurrently with later
commits. A PASSIVE checkpoint under continuous writes never catches up with
the WAL's end, so SQLite could never restart the WAL from its beginning:
once the WAL passes ``wal_limit_bytes`` the writer itself runs one more
(short) checkpoint between two groups (:meth:`Checkpointer.restart_wal`), and
the next transaction restarts the WAL. The checkpointer notices a full WAL after
its checkpoints; the writer also checks the ``-wal`` file's size after each
commit (:meth:`Checkpointer.committed`), so the bound holds when the checkpointer
gets no CPU (it runs at nice 19: under a competing load it may not run for
seconds). Checkpoints only move committed pages from the WAL into the main file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
import threading
from pathlib import Path

__all__ = ["CHECKPOINT_NICE", "Checkpointer", "lower_thread_priority"]

logger = logging.getLogger("edgeswarm.storage")

CHECKPOINT_NICE = 19
"""Nice value of the checkpointer thread (Linux: per thread): the event loop and the
writer preempt its copying, so it uses a core only when they leave it idle."""


def lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority to ``CHECKPOINT_NICE``, where supported."""
    if sys.platform != "linux":
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECKPOINT_NICE)


class Checkpointer:
    """A thread that runs a PASSIVE checkpoint of one index each time the writer asks."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str,
        busy_timeout_s: float,
        wal_limit_bytes: int,
        page_size: int,
        thread_name: str = "checkpoint",
    ) -> None:
        """``thread_name``: the thread is called ``<thread_name>:<file name>`` (for operators)."""
        self.path = path
        """The database file."""
        self._wal_path = path.with_name(path.name + "-wal")
        self.wal_limit_bytes = wal_limit_bytes
        self._page_size = page_size
        self._db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.execute(f"PRAGMA synchronous={synchronous}")
        except BaseException:
            self._db.close()
            raise
        self._wake = threading.Event()
        self._running = threading.Lock()
        """Held while a checkpoint runs (the checkpointer's or the writer's)."""
        self._counts = threading.Lock()
        self._stop = False
        self.wal_full = False
        """The WAL passed ``wal_limit_bytes``: the writer restarts it before its next group."""
        self.checkpoints = 0
        """Checkpoints run (by this thread or, to restart the WAL, the writer)."""
        self.wal_restarts = 0
        """Checkpoints the writer ran because the WAL passed ``wal_limit_bytes``."""
        self.failed = 0
        """Checkpoints that raised (the WAL keeps the data; the next one retries)."""
        self._thread = threading.Thread(
            target=self._run, name=f"{thread_name}:{path.name}", daemon=True
        )

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def request(self) -> None:
        """Writer: run a checkpoint soon."""
        self._wake.set()

    def committed(self) -> None:
        """Writer, after a commit: if the ``-wal`` file is past ``wal_limit_bytes`` (this
        thread is behind), restart the WAL before the next group. One ``stat`` per group."""
        if not self.wal_full and self._wal_file_bytes() > self.wal_limit_bytes:
            self.wal_full = True

    def _wal_file_bytes(self) -> int:
        """Size of the ``-wal`` file: a restart truncates it to ``wal_limit_bytes``
        (``journal_size_limit``); past that it grows only if no restart came."""
        try:
            return self._wal_path.stat().st_size
        except FileNotFoundError:
            return 0

    def restart_wal(self, writer_db: sqlite3.Connection, *, wait: bool = True) -> bool:
        """Writer, between groups: copy the rest of the WAL so the next commit restarts it;
        whether it ran.

        Waits for a background checkpoint in progress (which copied most of it);
        the thread starts no new one until this is done. ``wait=False`` (a writer on an
        event loop that serves others: this thread runs at nice 19 and may hold the
        checkpoint for seconds under load) returns False instead; the WAL stays marked
        full and the writer tries again before its next transaction.
        """
        if not self._running.acquire(blocking=wait):
            return False
        try:
            self.wal_full = False
            if self._checkpoint(writer_db) is not None:
                with self._counts:
                    self.wal_restarts += 1
        finally:
            self._running.release()
        return True

    def stop(self) -> None:
        """End the thread (after the checkpoint in progress) and close its connection."""
        self._stop = True
        self._wake.set()
        self._thread.join()

    def counts(self) -> tuple[int, int, int]:
        """(checkpoints, wal_restarts, failed), read together."""
        with self._counts:
            return self.checkpoints, self.wal_restarts, self.failed

    def _run(self) -> None:
        db = self._db
        lower_thread_priority()
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop:
                    return
                if self.wal_full:  # the writer's turn: it restarts the WAL next
                    continue
                with self._running:
                    wal_frames = self._checkpoint(db)
                if wal_frames is not None and wal_frames * self._page_size >= self.wal_limit_bytes:
                    self.wal_full = True
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> int | None:
        """One PASSIVE checkpoint (never waits for the writer); frames in the WAL, or None."""
        try:
            _busy, wal_frames, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            with self._counts:
                self.failed += 1
            logger.warning(
                "SQLite checkpoint failed",
                extra={"path": str(self.path), "error": str(exc)},
            )
            return None
        with self._counts:
            self.checkpoints += 1
        return int(wal_frames)
