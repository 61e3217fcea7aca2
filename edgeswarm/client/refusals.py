"""What an operator can do about each permanent refusal of a gateway: the end of an
``AuthRefusedError``'s message (``session.py``)."""

from __future__ import annotations

from typing import Final

from edgeswarm.wire import ErrorCode

__all__ = ["REFUSAL_HINTS"]

REFUSAL_HINTS: Final = {
    ErrorCode.UNKNOWN_PEER: "; enroll the key (`edgeswarm keys add`) or give a join token",
    ErrorCode.BAD_TOKEN: "; issue a new token on the gateway (`edgeswarm keys issue`)",
    ErrorCode.AUTH_FAILED: "; the id or the key belongs to another peer: check the id and key",
    ErrorCode.ROLE_NOT_ALLOWED: "; the key is enrolled for another role",
    ErrorCode.KEY_REVOKED: "; enroll the key again (`edgeswarm keys add`) to let it back in",
}
"""Each refusal code's hint, appended to the refusal's message."""
