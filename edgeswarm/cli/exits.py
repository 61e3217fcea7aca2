"""How a command ends: one line on stderr and a documented exit status.

===  ==============  ==========================================================
 0   ``OK``          done
 1   ``FAILURE``     the command was well formed but could not do its job: a
                     gateway unreachable, a port in use, a damaged or locked
                     file, observations left unacknowledged, damage found
 2   ``USAGE``       the command line is wrong: an unknown option, a bad value,
                     a file an option names that is missing or not what it
                     should be, an unknown context
 3   ``REFUSED``     the gateway refused this key or token for good (unknown or
                     revoked key, bad, expired or used token, wrong role):
                     retrying cannot help, an operator has to enroll the key; or a
                     module was refused for good (``edgeswarm agents``: unsigned,
                     signature, trust, digest, size, ABI, version conflict)
===  ==============  ==========================================================

Every error is one line, ``error: `` and what failed and what to do. A Python
traceback is shown only with ``edgeswarm --debug``; without it an error
edgeswarm did not foresee is one ``error: internal error`` line and status 1.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from edgeswarm.client.errors import AuthRefusedError
from edgeswarm.errors import EdgeswarmError
from edgeswarm.identity.keys import KeyFileError

__all__ = ["ExitCode", "Usage", "debug_enabled", "exits_on_error", "fail", "set_debug"]


class ExitCode(enum.IntEnum):
    """The exit statuses of every ``edgeswarm`` command (docs/operations.md)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    REFUSED = 3


class Usage(EdgeswarmError):  # noqa: N818 (reads as "a usage error": exit 2)
    """Raised inside an :func:`exits_on_error` block: the command line is wrong (exit 2)."""


_debug = False


def set_debug(on: bool) -> None:
    """``edgeswarm --debug``: errors propagate with their traceback."""
    global _debug
    _debug = on


def debug_enabled() -> bool:
    """Whether ``--debug`` was given."""
    return _debug


def fail(message: str, code: int = ExitCode.FAILURE) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(int(code))


@contextmanager
def exits_on_error(context: str = "") -> Iterator[None]:
    """Turn what the block raises into one line, ``error: context: what happened``, and
    its exit status: :class:`AuthRefusedError` 3; :class:`Usage`, or a key file that is
    missing or not what it should be, 2; any other edgeswarm
    error or an OS error (a file, a socket, a timeout) 1. With ``--debug`` the error
    propagates with its traceback.

    The one place the CLI catches the root of the error tree (``edgeswarm.errors``).
    """
    try:
        yield
    except (EdgeswarmError, OSError) as exc:
        if _debug:
            raise
        what = str(exc) or type(exc).__name__
        if isinstance(exc, AuthRefusedError):
            code = ExitCode.REFUSED
        elif isinstance(exc, Usage) or (isinstance(exc, KeyFileError) and not exc.writing):
            code = ExitCode.USAGE  # the command line, or a key file it names, is wrong
        else:
            code = ExitCode.FAILURE
        fail(f"{context}: {what}" if context else what, code)
