"""How the outcome of a group commit reaches the records' waiters.

A record is queued as a :class:`Pending` with who waits for it: a plain
callback run on the writer thread (``ObservationLog.submit``), or a callback
and an event loop (``ObservationLog.append_then``, and ``append``'s future).
After a group committed or failed, :func:`report` calls the plain callbacks
and makes one ``loop.call_soon_threadsafe`` per group and event loop, never
one per record: that one call runs every loop callback of the group in the
order the records were queued, then each distinct ``after_group`` hook once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from .records import AppendResult, LogRecord

__all__ = ["Outcome", "Pending", "report", "settle"]

logger = logging.getLogger("edgeswarm.gateway")

Outcome = AppendResult | BaseException
"""What a waiter receives: the append's result, or the group's ``LogWriteError``."""


@dataclass(slots=True)
class Pending:
    """A queued record and who waits for its outcome."""

    record: LogRecord
    on_done: Callable[[Outcome], None] | None = None
    """Called on the writer thread."""
    loop: asyncio.AbstractEventLoop | None = None
    on_loop: Callable[[Outcome], None] | None = None
    """Called on ``loop``."""
    after_group: Callable[[], None] | None = None
    """Called on ``loop`` after every ``on_loop`` of the group."""


def report(group: list[Pending], outcomes: list[Outcome]) -> None:
    """Writer thread: hand each record of ``group`` its outcome."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Outcome], None], Outcome]]]
    by_loop = {}
    hooks: dict[asyncio.AbstractEventLoop, dict[Callable[[], None], None]] = {}
    for pending, outcome in zip(group, outcomes, strict=True):
        if pending.on_done is not None:
            try:
                pending.on_done(outcome)
            except Exception:  # a caller's bug must not kill the writer
                logger.exception("observation log callback failed")
        if pending.loop is not None and pending.on_loop is not None:
            by_loop.setdefault(pending.loop, []).append((pending.on_loop, outcome))
            after = hooks.setdefault(pending.loop, {})
            if pending.after_group is not None:
                after[pending.after_group] = None
    for loop, batch in by_loop.items():
        with contextlib.suppress(RuntimeError):  # loop closed: nobody waits any more
            loop.call_soon_threadsafe(_run_on_loop, batch, hooks[loop])


def _run_on_loop(
    batch: list[tuple[Callable[[Outcome], None], Outcome]],
    after_group: dict[Callable[[], None], None],
) -> None:
    """Runs on the event loop: one call per group runs all its ``on_loop`` callbacks,
    then each distinct ``after_group`` hook once."""
    for on_done, outcome in batch:
        try:
            on_done(outcome)
        except Exception:  # one caller's bug must not keep the others' acks back
            logger.exception("observation log callback failed")
    for hook in after_group:
        try:
            hook()
        except Exception:
            logger.exception("observation log hook failed")


def settle(future: asyncio.Future[AppendResult], outcome: Outcome) -> None:
    """Resolve ``future`` with ``outcome`` (unless its caller cancelled it)."""
    if future.done():  # the caller cancelled it; the record is written anyway
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
