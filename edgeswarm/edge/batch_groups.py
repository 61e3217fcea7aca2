"""Spooled OBS_BATCH payloads read back: their counts, their checks, their grouping.

A spool written by an older edge may lack a batch's count or checksum: the spool
asks :func:`observation_count` and :func:`unverified_batch_problem` (the runner
passes them in). The uplink writes batches into the spool in groups of at most a
transaction's bytes (:func:`groups_within`).
"""

from __future__ import annotations

from collections.abc import Iterator

from edgeswarm.wire import BatchHeader, RemoteProtocolError, decode_payload

__all__ = ["groups_within", "observation_count", "unverified_batch_problem"]


def observation_count(payload: bytes) -> int:
    """Observations in an encoded OBS_BATCH (0 when it is not one): the count of a
    batch that a version-1 spool stored without it (``Spool(count_of=...)``)."""
    try:
        frame = decode_payload(payload, batch_arrays=False)
    except RemoteProtocolError:
        return 0
    return frame.count if isinstance(frame, BatchHeader) else 0


def unverified_batch_problem(seq: int, count: int, payload: bytes) -> str | None:
    """Why a batch spooled without a checksum (an older spool) must not be sent: it does
    not decode as an OBS_BATCH of its ``seq`` and ``count`` (``Spool(check_unverified=...)``)."""
    try:
        frame = decode_payload(payload, batch_arrays=False)
    except RemoteProtocolError as exc:
        return f"not an OBS_BATCH ({exc})"
    if not isinstance(frame, BatchHeader):
        return f"a {type(frame).__name__}, not an OBS_BATCH"
    if frame.seq != seq or frame.count != count:
        return f"holds seq {frame.seq} of {frame.count} agents, spooled as {seq} of {count}"
    return None


def groups_within(
    batches: list[tuple[int, bytes, int]], max_bytes: int
) -> Iterator[list[tuple[int, bytes, int]]]:
    """``batches`` in order, as few consecutive groups of at most ``max_bytes`` as there can
    be (a batch larger than that alone: the spool refuses it)."""
    group: list[tuple[int, bytes, int]] = []
    size = 0
    for batch in batches:
        if group and size + len(batch[1]) > max_bytes:
            yield group
            group, size = [], 0
        group.append(batch)
        size += len(batch[1])
    if group:
        yield group
