"""Durable local files shared by the processes: SQLite opened the one way they all need,
payload segments beside it, checkpoints off the commit path, one fsync policy."""

from .checkpoint import Checkpointer
from .fsync import FsyncPolicy
from .lock import DirectoryInUse, DirectoryLock
from .segments import SegmentFiles, segment_dir, segment_path
from .sqlite import (
    QUICK_CHECK_MAX_BYTES,
    Schema,
    create_private,
    is_corruption,
    open_database,
    open_operator_store,
    sqlite_errors,
    statements,
    transaction,
)

__all__ = [
    "QUICK_CHECK_MAX_BYTES",
    "Checkpointer",
    "DirectoryInUse",
    "DirectoryLock",
    "FsyncPolicy",
    "Schema",
    "SegmentFiles",
    "create_private",
    "is_corruption",
    "open_database",
    "open_operator_store",
    "segment_dir",
    "segment_path",
    "sqlite_errors",
    "statements",
    "transaction",
]
