"""How a gateway session ends, as errors: ended, redirected, refused for good."""

from __future__ import annotations

from edgeswarm.errors import EdgeswarmError
from edgeswarm.wire import ErrorCode, Redirect

__all__ = ["AuthRefusedError", "RedirectedError", "SessionEndedError"]


class SessionEndedError(EdgeswarmError, ConnectionError):
    """The session with the gateway ended while we were waiting on it."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        """The BYE's code when the gateway closed the session, else None."""


class RedirectedError(SessionEndedError):
    """The gateway sent this edge to the gateway that owns it (REDIRECT, then BYE)."""

    def __init__(self, message: str, *, redirect: Redirect) -> None:
        super().__init__(message, code=ErrorCode.REDIRECTED)
        self.redirect = redirect
        """Where to go: the owning gateway's id, host and port."""


class AuthRefusedError(EdgeswarmError):
    """The gateway refused this peer for good (``wire.AUTH_REFUSAL_CODES``: unknown or
    revoked key, bad, expired or used token, wrong role): connecting again cannot help,
    an operator has to enroll the key or issue a token. Not a ``ConnectionError``, so
    no retry loop swallows it."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code
        """The refusal's code."""
