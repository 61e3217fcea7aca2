"""Durable local files shared by the processes: SQLite opened the one way they all need."""

from .lock import DirectoryInUse, DirectoryLock
from .sqlite import (
    QUICK_CHECK_MAX_BYTES,
    Schema,
    create_private,
    is_corruption,
    open_database,
    statements,
    transaction,
)

__all__ = [
    "QUICK_CHECK_MAX_BYTES",
    "DirectoryInUse",
    "DirectoryLock",
    "Schema",
    "create_private",
    "is_corruption",
    "open_database",
    "statements",
    "transaction",
]
