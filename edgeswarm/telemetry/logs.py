"""Structured logs: one JSON object per line on stderr, ISO 8601 UTC timestamps."""

from __future__ import annotations

import logging
import sys
from typing import Literal, get_args

from pythonjsonlogger.json import JsonFormatter

LogLevelName = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
"""The levels ``--log-level`` offers."""
LOG_LEVELS: tuple[str, ...] = get_args(LogLevelName)


def configure_logging(level: str = "INFO", *, process: str) -> None:
    """Send every ``edgeswarm.*`` record to stderr as JSON, tagged with ``process``.

    Each line has ``ts`` (ISO 8601 in UTC, e.g. ``2026-12-01T15:05:54.289123+00:00``),
    ``level``, ``logger``, ``message``, ``process`` and the record's fields. Nothing
    of edgeswarm reaches Python's last-resort handler (unformatted lines) afterwards.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            static_fields={"process": process},
            timestamp="ts",
        )
    )
    root = logging.getLogger("edgeswarm")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
