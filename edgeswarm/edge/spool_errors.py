"""The spool's error tree and its overflow policy (``spool.py`` re-exports both).

Errors (one tree)::

    SpoolError               base of every spool error (an EdgeswarmError)
    ├── SpoolCorruptError    the file is not a usable spool (``path``); see
    │                        :meth:`Spool.quarantine_file`
    ├── SpoolInUse           another process has this spool open
    ├── SpoolFull            ``block`` policy: the append does not fit now
    ├── SpoolDiskFull        no room on the disk: nothing of the write stays; wait, retry
    ├── PayloadTooLarge      one payload is larger than ``max_bytes`` (also a ValueError)
    └── SeqOutOfOrder        seq is not above every seq appended before (also a ValueError)

"""

from __future__ import annotations

import enum
import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgeswarm.errors import EdgeswarmError
from edgeswarm.storage import is_corruption

__all__ = [
    "OverflowPolicy",
    "PayloadTooLarge",
    "SeqOutOfOrder",
    "SpoolCorruptError",
    "SpoolDiskFull",
    "SpoolError",
    "SpoolFull",
    "SpoolInUse",
    "storage_errors",
]


class SpoolError(EdgeswarmError):
    """Base of every spool error."""


class SpoolCorruptError(SpoolError):
    """The spool file is not a SQLite database, is damaged, or has a foreign schema.

    Nothing was changed on disk. Recovery: ``Spool.quarantine_file(path)`` moves
    it (and its ``-wal``/``-shm`` files) aside, then ``Spool(path)`` starts an
    empty spool. The batches in it are lost to the gateway; sequence numbers
    restart at 1 unless the caller passes ``min_next_seq``.
    """

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        """The spool file."""


class SpoolInUse(SpoolError):  # noqa: N818 (names a state, like SpoolFull)
    """Another process has this spool open (its segment directory is locked)."""


class SpoolFull(SpoolError):  # noqa: N818 (names a state, like queue.Full)
    """``block`` policy: the payload does not fit until some batches are ACKed."""

    def __init__(self, *, needed: int, held: int, max_bytes: int) -> None:
        super().__init__(f"spool full: {held} of {max_bytes} bytes held, {needed} more needed")
        self.needed = needed
        """Payload bytes of the refused append."""
        self.held = held
        """Payload bytes held when it was refused."""
        self.max_bytes = max_bytes
        """The spool's bound."""


class SpoolDiskFull(SpoolError):  # noqa: N818 (names a state, like SpoolFull)
    """The disk under the spool has no room (``ENOSPC``, ``EDQUOT``, SQLite's
    ``SQLITE_FULL``): nothing of the failed write stays. The edge waits and retries, as
    at ``SpoolFull``; ACKs free whole segments, so room usually comes back by itself."""


class PayloadTooLarge(SpoolError, ValueError):  # noqa: N818
    """A single payload is larger than the spool's ``max_bytes``; it can never fit."""


class SeqOutOfOrder(SpoolError, ValueError):  # noqa: N818
    """``append(seq)`` with ``seq < next_seq()``: reused or going backwards."""


class OverflowPolicy(enum.StrEnum):
    """What an append does when the spool would exceed ``max_bytes``."""

    BLOCK = "block"
    """Raise :class:`SpoolFull`; nothing is stored. The caller stops producing
    (or waits for ACKs) and retries."""

    DROP_OLDEST = "drop_oldest"
    """Delete the oldest pending batches until the new one fits; count them in
    :attr:`Spool.dropped_batches` / :attr:`Spool.dropped_bytes` and log a warning."""


_SQLITE_FULL = 13
"""SQLite's primary result code for "database or disk is full"."""


@contextmanager
def storage_errors(path: Path, segments: Path) -> Iterator[None]:
    """SQLite errors of the index at ``path`` and OS errors of its ``segments``: a
    :class:`SpoolError` naming the file (:class:`SpoolCorruptError` when it is damaged)."""
    try:
        yield
    except sqlite3.Error as exc:
        if is_corruption(exc):
            raise SpoolCorruptError(f"damaged ({exc})", path=path) from exc
        if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL:
            raise SpoolDiskFull(f"{path}: {exc}") from exc
        raise SpoolError(f"{path}: {exc}") from exc
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SpoolDiskFull(f"{segments}: {exc}") from exc
        raise SpoolError(f"{segments}: {exc}") from exc
