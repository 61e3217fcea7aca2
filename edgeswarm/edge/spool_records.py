"""What a spooled batch is, apart from where it is stored: its checksum, its epoch, and
why it may be quarantined.

The storage engine (``spool.py``, SQLite today) keeps rows; this module says
what a row must satisfy to be sent, so that another engine keeps the same
rules:

- **Checksum.** Every spooled batch carries the XXH3-64 of its ``seq``, its
  observation ``count`` and its payload (:func:`batch_checksum`, the hash the
  gateway's log uses), computed when it is spooled and checked
  (:func:`batch_problem`) right before it is sent. A flipped bit anywhere in
  the three fails the check.
- **Quarantine.** A batch that fails its check, that the edge cannot send
  (:data:`QuarantineReason.UNSENDABLE`), or that the gateway refused for good
  (ERROR with its ``seq`` and a code of ``wire.BATCH_REFUSED_CODES``) is moved
  aside, counted and logged, never sent again and never counted as
  acknowledged; delivery goes on with the next batch.
- **Sequence epoch.** A spool is created with a random epoch
  (:func:`new_seq_epoch`); its ``seq`` numbers belong to it. An edge whose
  spool is gone starts a new epoch instead of reusing numbers the gateway
  already holds (protocol, ``seq_epoch``). A spool written before epochs
  existed is epoch 0.
"""

from __future__ import annotations

import enum
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

import xxhash

__all__ = [
    "QuarantineReason",
    "QuarantinedBatch",
    "UnverifiedCheck",
    "batch_checksum",
    "batch_problem",
    "new_seq_epoch",
]

_HEADER = struct.Struct("<qq")


class QuarantineReason(enum.StrEnum):
    """Why a spooled batch was moved aside."""

    CHECKSUM = "checksum"
    """Its bytes, seq or count changed on disk since it was spooled."""
    UNSENDABLE = "unsendable"
    """The protocol does not let it be sent (e.g. more agents than the gateway takes)."""
    REJECTED = "rejected"
    """The gateway answered it with an ERROR that refuses it for good."""
    MISSING = "missing"
    """Its row survived but its bytes did not (an OS crash or power loss before they
    reached the disk under ``--spool-fsync normal``/``off``, or a damaged disk)."""


@dataclass(frozen=True, slots=True)
class QuarantinedBatch:
    """A batch moved aside."""

    seq: int
    """Its sequence number."""
    count: int
    """Its observation count, as stored (wrong when the row was damaged)."""
    reason: QuarantineReason
    """Why."""
    detail: str
    """What exactly (the gateway's message, the mismatch)."""


def batch_checksum(seq: int, count: int, payload: bytes) -> int:
    """XXH3-64 of ``seq``, ``count`` and ``payload``, as SQLite stores integers (signed)."""
    digest = xxhash.xxh3_64()
    digest.update(_HEADER.pack(seq, count))
    digest.update(payload)
    value = digest.intdigest()
    return value - (1 << 64) if value >= 1 << 63 else value


UnverifiedCheck = Callable[[int, int, bytes], "str | None"]
"""Why a batch spooled before checksums existed must not be sent (it does not decode as
the OBS_BATCH of its seq and count), or None; ``batch_groups.unverified_batch_problem``."""


def batch_problem(
    seq: int,
    count: int,
    payload: bytes,
    checksum: int | None,
    unverified: UnverifiedCheck | None = None,
) -> str | None:
    """Why this stored batch must not be sent, or None. ``checksum`` None: a batch
    spooled before checksums existed, checked by ``unverified`` (when given) instead."""
    if checksum is None:
        return unverified(seq, count, payload) if unverified is not None else None
    actual = batch_checksum(seq, count, payload)
    if actual != checksum:
        stored, read = checksum & (2**64 - 1), actual & (2**64 - 1)
        return f"checksum mismatch (stored {stored:016x}, computed {read:016x})"
    return None


def new_seq_epoch() -> int:
    """A fresh sequence epoch: random, 1..2**63-1 (0 is the epoch of older spools)."""
    return secrets.randbelow(2**63 - 1) + 1
