"""``edgeswarm log export``: one edge's observations from the log, as a replayable recording.

Reads committed OBS_BATCH payloads of one edge (``seq`` from ``from_seq`` to
``to_seq`` inclusive) through :func:`~.reader.read_records` (every payload
checked against its checksum; runs beside a live gateway), decodes them, and
writes one record per tick (the batches of a tick concatenated) to a
recording (:mod:`edgeswarm.storage.recording`, kind ``observations``) that an
edge replays with ``--io replay:PATH``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeswarm.storage.recording import RecordingWriter
from edgeswarm.wire import ObservationBatch, decode_payload
from edgeswarm.wire.arrays import encode_array

from .reader import read_records
from .records import ObservationLogError

__all__ = ["ExportReport", "export_edge"]

OBSERVATIONS_KIND = "observations"


class ExportError(ObservationLogError):
    """A stored payload that is not an observation batch (the export stops there)."""


@dataclass
class ExportReport:
    edge_id: str
    path: str
    batches: int = 0
    ticks: int = 0
    observations: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    bytes: int = 0
    seconds: float = 0.0


def export_edge(
    log_path: Path,
    edge_id: str,
    out: Path,
    *,
    from_seq: int = 0,
    to_seq: int | None = None,
    progress: Callable[[ExportReport], None] | None = None,
) -> ExportReport:
    """Write ``edge_id``'s batches ``from_seq..to_seq`` of the log at ``log_path``
    (``observations.db``) to the recording ``out``."""
    started = time.monotonic()
    report = ExportReport(edge_id=edge_id, path=str(out))
    segments = log_path.with_name(log_path.name + "-segments")
    pending: list[ObservationBatch] = []
    pending_at = 0.0
    next_progress = started + 1.0
    with RecordingWriter(out, OBSERVATIONS_KIND, edge_id=edge_id, from_seq=from_seq) as writer:

        def flush() -> None:
            if not pending:
                return
            writer.write(_tick_record(pending, pending_at))
            report.ticks += 1
            pending.clear()

        for record in read_records(log_path, segments, edge_id, from_seq):
            if to_seq is not None and record.seq > to_seq:
                break
            frame = decode_payload(record.payload)
            if not isinstance(frame, ObservationBatch):
                raise ExportError(
                    f"{edge_id!r} seq {record.seq}: a stored {type(frame).__name__}, "
                    "not an observation batch"
                )
            if pending and frame.tick != pending[0].tick:
                flush()
            if not pending:
                pending_at = record.received_at
            pending.append(frame)
            report.batches += 1
            report.observations += record.count
            report.bytes += len(record.payload)
            report.first_seq = record.seq if report.first_seq is None else report.first_seq
            report.last_seq = record.seq
            if progress is not None and time.monotonic() >= next_progress:
                progress(report)
                next_progress += 1.0
        flush()
    report.seconds = time.monotonic() - started
    return report


def _tick_record(batches: list[ObservationBatch], received_at: float) -> dict[str, Any]:
    def column(name: str, dtype: type) -> dict[str, Any]:
        joined: NDArray[Any] = np.concatenate([getattr(b, name) for b in batches]).astype(dtype)
        return encode_array(joined, copy=True)

    return {
        "tick": batches[0].tick,
        "t": received_at,
        "agent_ids": column("agent_ids", np.uint32),
        "observations": column("observations", np.float32),
        "rewards": column("rewards", np.float32),
    }
