"""The background scrub: the gateway reads its whole observation log back, now and then.

Nothing else reads most stored batches again (the log is written once and
read on demand), so a flipped bit in a segment or in the index would stay
unnoticed until someone needs that batch. A :class:`Scrubber` thread runs
:func:`~edgeswarm.gateway.log.verify.verify_log` (``quick_check`` of the
index, every row and payload against its checksum) once per ``interval_s``,
reading at most ``max_bytes_per_s``, and reports each damaged row or payload
as an error log line (at most ``MAX_LOGGED`` per run) and in
``edgeswarm_gateway_log_scrub_*`` (``metrics.py``). It changes nothing: what
to do with damage is the operator's decision (docs/operations.md).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from pathlib import Path

from edgeswarm.resource import Resource

from .verify import VerifyReport, verify_log

__all__ = ["ScrubStats", "Scrubber"]

logger = logging.getLogger("edgeswarm.gateway")

MAX_LOGGED = 20
"""Damaged rows logged one by one per run (the rest are counted)."""


@dataclasses.dataclass
class ScrubStats:
    """Counters of the scrubs since the gateway started."""

    runs: int = 0
    """Scrubs completed."""
    rows: int = 0
    """Index rows checked, over all runs."""
    problems: int = 0
    """Damaged rows or payloads found, over all runs."""
    last_problems: int = 0
    """Found by the last completed run (database check problems included)."""
    last_completed: float = 0.0
    """Wall-clock time the last run completed (0: none yet)."""
    failures: int = 0
    """Runs that could not read the index at all."""


class Scrubber(Resource):
    """A daemon thread verifying one log every ``interval_s`` (the first run right away)."""

    def __init__(self, path: Path, *, interval_s: float, max_bytes_per_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self.max_bytes_per_s = max_bytes_per_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._stats = ScrubStats()
        self._thread = threading.Thread(target=self._run, name="log-scrub", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def stats(self) -> ScrubStats:
        with self._lock:
            return dataclasses.replace(self._stats)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                report = verify_log(
                    self.path,
                    full=False,
                    max_bytes_per_s=self.max_bytes_per_s,
                    should_stop=self._stop.is_set,
                )
            except sqlite3.Error as exc:
                with self._lock:
                    self._stats.failures += 1
                logger.error(
                    "observation log scrub could not read the index",
                    extra={"path": str(self.path), "error": str(exc)},
                )
            else:
                if not self._stop.is_set():
                    self._completed(report)
            self._stop.wait(self.interval_s)

    def _completed(self, report: VerifyReport) -> None:
        found = report.problem_count + len(report.database)
        with self._lock:
            s = self._stats
            s.runs += 1
            s.rows += report.rows
            s.problems += found
            s.last_problems = found
            s.last_completed = time.time()
        for problem in report.problems[:MAX_LOGGED]:
            logger.error(
                "observation log damaged",
                extra={
                    "path": str(self.path),
                    "edge_id": problem.edge_id,
                    "seq": problem.seq,
                    "segment": problem.segment,
                    "offset": problem.offset,
                    "problem": problem.what,
                },
            )
        level = logging.ERROR if found else logging.INFO
        logger.log(
            level,
            "observation log scrubbed",
            extra={
                "path": str(self.path),
                "rows": report.rows,
                "bytes": report.payload_bytes,
                "problems": report.problem_count,
                "database": report.database[:5],
                "unchecked_rows": report.unchecked_rows,
                "seconds": round(report.seconds, 3),
            },
        )

    def close(self) -> None:
        """Stop after the row being checked."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
