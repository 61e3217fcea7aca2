# ruff: noqa: N818  (names without the Error suffix are public API; they read as h11's do)
"""Errors of the wire protocol.

One tree, split by who caused the error. Every error carries the
``error_code`` that travels in an ERROR or BYE frame (see ``docs/protocol.md``)::

    WireError                      (an edgeswarm.errors.EdgeswarmError)
    ├── RemoteProtocolError        the peer sent something the protocol forbids
    │   ├── MalformedFrame         not msgpack, not a map, missing or mistyped field
    │   ├── UnknownFrameType       a frame type this version does not define
    │   ├── FrameTooLarge          length prefix above the negotiated maximum (fatal)
    │   ├── InvalidArray           bad dtype, shape or byte length of an array
    │   ├── BatchTooLarge          more agents in one batch than the gateway allows
    │   ├── UnexpectedFrame        a valid frame in the wrong state or from the wrong role
    │   ├── UnsupportedVersion     the peer speaks a protocol version we do not
    │   └── CreditExceeded         more unacknowledged OBS_BATCH frames than granted (fatal)
    └── LocalProtocolError         we tried to send something the protocol forbids

Remote errors are caught at the session boundary and become an ERROR frame
(and, when ``fatal``, a BYE and the end of the session); they never escape
into the process that serves other peers.
"""

from __future__ import annotations

from enum import IntEnum

from edgeswarm.errors import EdgeswarmError


class ErrorCode(IntEnum):
    """Codes carried by ERROR and BYE frames. Values are part of the protocol."""

    NO_ERROR = 0
    MALFORMED_FRAME = 1
    UNKNOWN_FRAME_TYPE = 2
    FRAME_TOO_LARGE = 3
    INVALID_ARRAY = 4
    BATCH_TOO_LARGE = 5
    UNEXPECTED_FRAME = 6
    UNSUPPORTED_VERSION = 7
    HELLO_TIMEOUT = 8
    INTERNAL_ERROR = 9
    SHUTTING_DOWN = 10
    AUTH_FAILED = 11
    UNKNOWN_PEER = 12
    ROLE_NOT_ALLOWED = 13
    BAD_TOKEN = 14
    NO_CREDIT = 15
    BATCH_REJECTED = 16
    """The gateway will never store this OBS_BATCH (ERROR with its ``seq``; the session goes on)."""
    SESSION_REPLACED = 17
    """BYE: a newer session of the same edge took this one's place."""
    STALE_SEQ_EPOCH = 18
    """Refusal: the edge's ``seq_epoch`` is older than one the gateway admitted since."""
    SEQ_CONFLICT = 19
    """Fatal: another batch with other bytes is stored under this OBS_BATCH's ``seq`` (in
    its epoch): two senders share the numbers. The edge starts a new ``seq_epoch``."""
    KEY_REVOKED = 20
    """Fatal: the peer's key was removed from the gateway's registry (or replaced) while
    its session was open."""
    REDIRECTED = 21
    """BYE after REDIRECT: the edge belongs to another gateway of the ring."""
    # 100-199: swarm state (feature ``state``, docs/protocol.md section 9)
    STATE_ERROR = 100
    """Any other state error (never sent: a more precise code always exists)."""
    MALFORMED_UPDATE = 101
    MALFORMED_STATE_VECTOR = 102
    FOREIGN_STATE_ENTRY = 103
    """A STATE_UPDATE writes an entry or a writer id not bound to the sending peer."""
    STATE_READ_ONLY = 104
    """A STATE_UPDATE that changes the document, from a role that may only read."""
    INVALID_STATE_KEY = 110
    """Local: a state key or set item refused by the document (never sent)."""
    WRITER_REUSED = 111
    """Local: a peer holds more of our writer's history than we do (sent as INTERNAL_ERROR)."""
    STATE_STORE_ERROR = 120
    """The receiver merged a STATE_UPDATE but could not persist it (disk full, I/O error)."""
    # 200-299: module distribution (feature ``modules``, docs/protocol.md section 14)
    UNKNOWN_BLOB = 200
    """A BLOB_REQUEST for a digest the gateway does not hold, or past its end."""
    # 300-399: placement of agents on edges (feature ``placement``, docs/protocol.md section 13)
    NOT_OWNER = 300
    """A CHECKPOINT holds rows of agents the edge does not own at the gateway's placement
    epoch (they moved, or were never its): those rows are not stored, the others are."""


BATCH_REFUSED_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.MALFORMED_FRAME,
        ErrorCode.INVALID_ARRAY,
        ErrorCode.BATCH_TOO_LARGE,
        ErrorCode.BATCH_REJECTED,
    }
)
"""Codes of an ERROR about one OBS_BATCH (it carries the batch's ``seq``) that refuse
that batch for good: sent again, it would be refused again (protocol, section 4.8)."""


AUTH_REFUSAL_CODES: frozenset[ErrorCode] = frozenset(
    {
        ErrorCode.AUTH_FAILED,
        ErrorCode.UNKNOWN_PEER,
        ErrorCode.ROLE_NOT_ALLOWED,
        ErrorCode.BAD_TOKEN,
        ErrorCode.KEY_REVOKED,
    }
)
"""Codes of a refusal that asking again will not change (protocol, section 5.1): the key
is unknown, revoked, enrolled for another id or role, or the join token is bad, expired
or used up. A client stops and says so; an operator has to act."""


def code_name(code: int) -> str:
    """The name of ``code`` (``"KEY_REVOKED"``), or its number as text when it has none:
    how logs and messages show a code."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


class WireError(EdgeswarmError):
    """Base of every wire protocol error."""

    error_code: ErrorCode = ErrorCode.INTERNAL_ERROR
    fatal: bool = False
    """True when the session cannot continue after this error."""


class RemoteProtocolError(WireError):
    """The peer violated the protocol."""

    seq: int | None = None
    """Sequence number of the offending OBS_BATCH, when it could be read."""

    def __init__(self, message: str = "", *, seq: int | None = None) -> None:
        super().__init__(message)
        self.seq = seq


class MalformedFrame(RemoteProtocolError):
    error_code = ErrorCode.MALFORMED_FRAME


class UnknownFrameType(RemoteProtocolError):
    error_code = ErrorCode.UNKNOWN_FRAME_TYPE


class FrameTooLarge(RemoteProtocolError):
    error_code = ErrorCode.FRAME_TOO_LARGE
    fatal = True


class InvalidArray(RemoteProtocolError):
    error_code = ErrorCode.INVALID_ARRAY


class BatchTooLarge(RemoteProtocolError):
    error_code = ErrorCode.BATCH_TOO_LARGE


class UnexpectedFrame(RemoteProtocolError):
    error_code = ErrorCode.UNEXPECTED_FRAME


class UnsupportedVersion(RemoteProtocolError):
    error_code = ErrorCode.UNSUPPORTED_VERSION
    fatal = True


class CreditExceeded(RemoteProtocolError):
    error_code = ErrorCode.NO_CREDIT
    fatal = True


class LocalProtocolError(WireError):
    """We tried to send a frame the protocol does not allow now."""
