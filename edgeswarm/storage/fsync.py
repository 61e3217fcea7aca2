"""How hard a commit of a SQLite index and its payload segments is pushed to disk.

One operator setting for the files that hold durable data beside a SQLite
index in WAL mode: the gateway's observation log (``--fsync``) and the
edge's spool (``--spool-fsync``).
"""

from __future__ import annotations

import enum

__all__ = ["FsyncPolicy"]


class FsyncPolicy(enum.StrEnum):
    """How hard a commit is pushed to stable storage.

    Sets SQLite's ``synchronous`` (the index always runs in WAL mode: a commit
    appends the group's index pages to the ``-wal`` file, and checkpoints later
    copy them into the main file) and whether segment appends are synced. Said
    here of the gateway's log; the edge's spool keeps the same promises for
    what it spools (``edge/spool.py``: its syncs run off the tick thread).
    """

    ALWAYS = "always"
    """``synchronous=FULL``: at every group commit the segment is fdatasynced,
    then the WAL fsynced, before any waiter of the group is told. A reported
    append survives a process crash, ``kill -9``, an OS crash and power loss
    (as far as the disk honours fsync). Cost: two fsyncs per group, not per
    record."""

    NORMAL = "normal"
    """``synchronous=NORMAL``: segment appends and commits are ``write()`` calls
    into the page cache with no fsync; the WAL is fsynced only at checkpoints,
    segments when the OS writes them back. A reported append survives a
    process crash or ``kill -9`` of the gateway. An OS crash or power loss may
    roll back the last commits, or keep rows whose segment bytes were lost
    (deleted when the log opens: :attr:`LogStats.lost_on_open`) — records
    already acknowledged to edges can then be lost."""

    OFF = "off"
    """``synchronous=OFF``: nothing is ever fsynced. A reported append survives a
    process crash, but an OS crash or power loss may lose commits *and corrupt
    the database*. For tests and benchmarks only."""

    @property
    def pragma(self) -> str:
        """The ``PRAGMA synchronous`` value for this policy."""
        return {"always": "FULL", "normal": "NORMAL", "off": "OFF"}[self.value]
