"""Reading a whole observation log back and checking every stored byte.

:func:`verify_log` opens the index read-only (a WAL snapshot: it never blocks
the writer, so it runs beside a live gateway) and checks, in this order:

1. the database itself: ``PRAGMA integrity_check`` (every page, every b-tree,
   every index against its table; ``edgeswarm log verify``) or
   ``PRAGMA quick_check`` (the same without index against table; the
   background scrub);
2. every index row against its own checksum (``row_xxh3``, index version 4;
   older rows are counted as unchecked);
3. every payload: its segment file exists, holds ``length`` bytes at
   ``offset``, and they hash to the row's XXH3-64 (inline payloads too).

It reports what it found (:class:`VerifyReport`); it changes nothing. The
background :class:`~edgeswarm.gateway.log.scrub.Scrubber` runs it at a
bounded rate; ``edgeswarm log verify`` runs it at once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgeswarm.storage import segment_path

from .index import checksum, row_checksum

__all__ = ["MAX_PROBLEMS_KEPT", "Problem", "VerifyReport", "verify_log"]

MAX_PROBLEMS_KEPT = 1000
"""Problems kept in a report (all are counted)."""


@dataclass(frozen=True)
class Problem:
    """One damaged row or payload."""

    edge_id: str
    seq: int
    what: str
    """What does not match (``row checksum``, ``payload checksum``, ``short payload``, ...)."""
    segment: int | None = None
    offset: int | None = None


@dataclass
class VerifyReport:
    """What :func:`verify_log` found."""

    path: str
    rows: int = 0
    """Index rows read."""
    payload_bytes: int = 0
    """Payload bytes read and hashed."""
    unchecked_rows: int = 0
    """Rows written before index version 4: their own fields carry no checksum."""
    database: list[str] = field(default_factory=list)
    """What SQLite's check reported, when not ``ok``."""
    problem_count: int = 0
    """Damaged rows and payloads found."""
    problems: list[Problem] = field(default_factory=list)
    """The first :data:`MAX_PROBLEMS_KEPT` of them."""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Nothing damaged was found."""
        return not self.database and not self.problem_count

    def add(self, problem: Problem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)


def verify_log(
    path: Path,
    *,
    full: bool = True,
    max_bytes_per_s: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[VerifyReport], None] | None = None,
) -> VerifyReport:
    """Check ``observations.db`` at ``path`` and its segments (module docstring).

    ``full``: ``integrity_check`` rather than ``quick_check``. ``max_bytes_per_s``
    bounds the payload read rate (sleeping between reads). ``should_stop`` is
    asked between rows. ``progress`` is called about once a second. Raises
    ``sqlite3.Error`` when the index cannot be opened at all.
    """
    started = time.monotonic()
    report = VerifyReport(path=str(path))
    segments = path.with_name(path.name + "-segments")
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    files: dict[int, int] = {}
    try:
        check = "integrity_check" if full else "quick_check"
        found = [str(r[0]) for r in db.execute(f"PRAGMA {check}(100)")]
        if found != ["ok"]:
            report.database = found
        columns = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
        own = "row_xxh3" if "row_xxh3" in columns else "NULL"
        rows = db.execute(
            "SELECT edge_id, seq, tick, count, payload, segment, offset, length, xxh3,"
            f" {own} FROM batches ORDER BY segment, offset"
        )
        reported = started
        for edge, seq, tick, count, inline, segment, offset, length, xxh3, own_sum in rows:
            if should_stop():
                break
            report.rows += 1
            inline = bytes(inline)
            if own_sum is None:
                report.unchecked_rows += 1
            elif own_sum != row_checksum(
                edge, seq, tick, count, inline, segment, offset, length, xxh3
            ):
                report.add(Problem(edge, seq, "row checksum mismatch", segment, offset))
                continue
            what = _payload_problem(segments, files, segment, offset, length, xxh3, inline)
            report.payload_bytes += length or len(inline)
            if what is not None:
                report.add(Problem(edge, seq, what, segment, offset))
            now = time.monotonic()
            if max_bytes_per_s:
                ahead = report.payload_bytes / max_bytes_per_s - (now - started)
                if ahead > 0:
                    time.sleep(min(ahead, 1.0))
            if progress is not None and now - reported >= 1.0:
                reported = now
                report.seconds = now - started
                progress(report)
    finally:
        for fd in files.values():
            os.close(fd)
        db.close()
    report.seconds = time.monotonic() - started
    return report


def _payload_problem(
    directory: Path,
    files: dict[int, int],
    segment: int | None,
    offset: int | None,
    length: int | None,
    xxh3: int | None,
    inline: bytes,
) -> str | None:
    """What is wrong with one row's payload, or None."""
    if segment is None:  # inline (old rows, empty payloads)
        if xxh3 is not None and checksum(inline) != xxh3:
            return "inline payload checksum mismatch"
        return None
    if offset is None or length is None or xxh3 is None:
        return "segment row without offset, length or checksum"
    fd = files.get(segment)
    if fd is None:
        try:
            fd = files[segment] = os.open(segment_path(directory, segment), os.O_RDONLY)
        except FileNotFoundError:
            return f"segment file {segment_path(directory, segment).name} missing"
    payload = os.pread(fd, length, offset)
    if len(payload) != length:
        return f"short payload ({len(payload)} of {length} bytes)"
    if checksum(payload) != xxh3:
        return "payload checksum mismatch"
    return None
