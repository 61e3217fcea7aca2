"""Durable local files shared by the processes: SQLite opened the one way they all need."""

from .sqlite import Schema, is_corruption, open_database, statements, transaction

__all__ = ["Schema", "is_corruption", "open_database", "statements", "transaction"]
