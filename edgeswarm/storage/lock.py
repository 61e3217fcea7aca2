"""One process per data directory: an exclusive ``flock`` on ``DIR/<name>.lock``.

A gateway or an edge keeps files in its data directory that only one writer
may change (the spool, the log, the swarm state). A second process started on
the same directory would corrupt them or take over their numbering, so each
process takes :class:`DirectoryLock` first and holds it until it exits; the
kernel releases it when the process dies, even by ``kill -9``. The lock file
holds the owner's pid, so the refusal can say who holds it.

Errors::

    DirectoryInUse    another process holds the directory (an EdgeswarmError)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from edgeswarm.errors import EdgeswarmError
from edgeswarm.resource import Resource

__all__ = ["DirectoryInUse", "DirectoryLock"]


class DirectoryInUse(EdgeswarmError):  # noqa: N818 (names a state, like queue.Full)
    """Another live process holds the data directory's lock."""


class DirectoryLock(Resource):
    """Holds ``directory/<name>.lock`` exclusively until ``close()`` (or the process ends)."""

    def __init__(self, directory: Path, *, name: str, owner: str) -> None:
        """Create ``directory`` if needed and lock it for ``owner`` (``"edge edge-7"``).

        Raises :class:`DirectoryInUse` naming the directory and the holder's pid, or
        ``OSError`` when the directory or the lock file cannot be created.
        """
        self.path = directory / f"{name}.lock"
        directory.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            self.close()
            raise DirectoryInUse(
                f"data directory {directory} is in use by another process (pid {holder}):"
                f" stop it, or give this {owner} its own --data-dir"
            ) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def close(self) -> None:
        """Release the lock (the file stays: removing it would race a new holder)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
