"""The gateway's durable observation log, as a wing of the gateway.

``store.py`` is the log (queue, writer thread, group commit); ``index.py``
its SQLite index, ``storage/segments.py`` its payload files, ``recovery.py`` what
opening after a crash does, ``storage/checkpoint.py`` its WAL checkpoints,
``outcomes.py`` how waiters hear of their group, ``reader.py`` reading back,
``records.py`` its values and errors, ``verify.py`` reading everything back,
``scrub.py`` doing that in the background, ``metrics.py`` its Prometheus series.
"""

from .holdings import EpochStanding
from .metrics import LogCollector, ScrubCollector
from .records import (
    AppendResult,
    EdgeAggregate,
    FsyncPolicy,
    LogClosed,
    LogCorruptError,
    LogOpenError,
    LogOverloaded,
    LogRecord,
    LogRecordCorrupt,
    LogRecordRejected,
    LogSeqConflict,
    LogStats,
    LogWriteError,
    ObservationLogError,
)
from .scrub import Scrubber, ScrubStats
from .store import ObservationLog
from .verify import Problem, VerifyReport, verify_log

__all__ = [
    "AppendResult",
    "EdgeAggregate",
    "EpochStanding",
    "FsyncPolicy",
    "LogClosed",
    "LogCollector",
    "LogCorruptError",
    "LogOpenError",
    "LogOverloaded",
    "LogRecord",
    "LogRecordCorrupt",
    "LogRecordRejected",
    "LogSeqConflict",
    "LogStats",
    "LogWriteError",
    "ObservationLog",
    "ObservationLogError",
    "Problem",
    "ScrubCollector",
    "ScrubStats",
    "Scrubber",
    "VerifyReport",
    "verify_log",
]
