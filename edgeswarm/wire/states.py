"""The session state machine of protocol v2, as one table.

Rules (``docs/protocol.md`` has the same table in prose):

1. A session has two sides. The *client* opened the QUIC stream; the *server*
   (the gateway) accepted it. Each side tracks its own state; every frame
   sent or received moves it along ``TRANSITIONS``.
2. The client starts in ``START`` and sends HELLO first (``AWAIT_CHALLENGE``).
   The server starts in ``AWAIT_HELLO``; receiving HELLO moves it to
   ``HELLO_RECEIVED``, where the application either challenges the client
   (CHALLENGE, ``AWAIT_AUTH``) or refuses it (ERROR then BYE, ``CLOSED``).
   The client answers the CHALLENGE with AUTH (``AWAIT_WELCOME``); receiving
   AUTH moves the server to ``AUTH_RECEIVED``, where the application checks
   the signature and accepts (WELCOME, ``READY``) or refuses. The client is
   ``READY`` once WELCOME arrives.
3. In ``READY`` the client may send OBS_BATCH, STATUS_REQUEST; the server may
   send ACK, ACTIONS, STATUS. Some frames are further restricted to the roles
   the client's HELLO may name (``SENDER_ROLES``): OBS_BATCH is sent by ``edge``
   clients only, STATUS_REQUEST by ``edge`` and ``admin`` clients, and STATUS
   goes to those two only. STATE_SYNC and STATE_UPDATE may
   be sent and received by both sides in ``READY``, but only when the feature
   they belong to was negotiated: named in the client's HELLO ``features``
   and in the gateway's WELCOME ``features`` (``FEATURE_GATED``).
   The heavy lane's frames (feature ``heavy``) flow in ``READY`` one way
   each, and only for the client role ``SENDER_ROLES`` names: INFER_REQUEST
   from an ``edge`` client to the server and from the server to an
   ``inference`` client, INFER_RESULT from an ``inference`` client. Module
   distribution's frames (feature ``modules``) are between the server and
   ``edge`` clients only: MODULE_ASSIGN and BLOB_CHUNK from the server,
   MODULE_REPORT and BLOB_REQUEST from the edge. Placement's ASSIGN goes from
   the server to ``edge`` clients, CHECKPOINT from them (feature ``placement``).
   REDIRECT (feature ``redirect``) goes from the server to ``edge`` clients, in
   ``AUTH_RECEIVED`` instead of WELCOME (gated on the client's HELLO ``features``,
   as nothing is negotiated yet) or in ``READY``; BYE follows it.
   Registry replication's frames (feature ``registry``: REGISTRY_INDEX,
   REGISTRY_REQUEST, REGISTRY_CHUNK) flow both ways, ``gateway`` clients only.
4. ERROR may be sent and received in every state except ``CLOSED``. A side
   never answers a received ERROR with an ERROR, so errors cannot ping-pong.
5. BYE may be sent and received in every state except ``CLOSED`` and always
   leads to ``CLOSED``. The receiver of a BYE does not answer it.
6. In ``CLOSED`` nothing is sent and everything received is ignored.
7. A frame with no entry in the table is forbidden: received, it is an
   ``UnexpectedFrame`` (answered with an ERROR frame); sent, it is a
   ``LocalProtocolError``.
8. Before ``READY`` (nothing is authenticated yet) a side reads frames under
   the handshake's limits (``codec.PREAUTH_MAX_FRAME_BYTES``), and the server
   ends the session at the first violation: ERROR, then BYE.
"""

from __future__ import annotations

from enum import Enum

from .frames import (
    FEATURE_HEAVY,
    FEATURE_MODULES,
    FEATURE_PLACEMENT,
    FEATURE_REDIRECT,
    FEATURE_REGISTRY,
    FEATURE_STATE,
    FrameType,
    Role,
)


class SessionState(Enum):
    """State of one side of a session."""

    START = "START"
    """Client: nothing sent yet."""
    AWAIT_CHALLENGE = "AWAIT_CHALLENGE"
    """Client: HELLO sent, waiting for CHALLENGE."""
    CHALLENGED = "CHALLENGED"
    """Client: CHALLENGE received; the application must answer with AUTH."""
    AWAIT_WELCOME = "AWAIT_WELCOME"
    """Client: AUTH sent, waiting for WELCOME."""
    AWAIT_HELLO = "AWAIT_HELLO"
    """Server: waiting for the client's HELLO (a deadline runs)."""
    HELLO_RECEIVED = "HELLO_RECEIVED"
    """Server: HELLO received; the application must challenge or refuse."""
    AWAIT_AUTH = "AWAIT_AUTH"
    """Server: CHALLENGE sent, waiting for AUTH."""
    AUTH_RECEIVED = "AUTH_RECEIVED"
    """Server: AUTH received; the application must accept or refuse."""
    READY = "READY"
    """Both: handshake done; data frames flow."""
    CLOSED = "CLOSED"
    """Both: BYE sent or received; the session is over."""


class Side(Enum):
    """Which end of the session stream a ``Session`` is."""

    CLIENT = "client"
    SERVER = "server"


class Direction(Enum):
    """Whether a frame is being sent or was received."""

    SEND = "send"
    RECEIVE = "receive"


_S = SessionState
_F = FrameType
_C = Side.CLIENT
_V = Side.SERVER
_OUT = Direction.SEND
_IN = Direction.RECEIVE

TRANSITIONS: dict[tuple[Side, SessionState, Direction, FrameType], SessionState] = {
    # --- client -----------------------------------------------------------
    (_C, _S.START, _OUT, _F.HELLO): _S.AWAIT_CHALLENGE,
    (_C, _S.AWAIT_CHALLENGE, _IN, _F.CHALLENGE): _S.CHALLENGED,
    (_C, _S.CHALLENGED, _OUT, _F.AUTH): _S.AWAIT_WELCOME,
    (_C, _S.AWAIT_WELCOME, _IN, _F.WELCOME): _S.READY,
    (_C, _S.READY, _OUT, _F.OBS_BATCH): _S.READY,
    (_C, _S.READY, _OUT, _F.STATUS_REQUEST): _S.READY,
    (_C, _S.READY, _IN, _F.ACK): _S.READY,
    (_C, _S.READY, _IN, _F.ACTIONS): _S.READY,
    (_C, _S.READY, _IN, _F.STATUS): _S.READY,
    # --- server -----------------------------------------------------------
    (_V, _S.AWAIT_HELLO, _IN, _F.HELLO): _S.HELLO_RECEIVED,
    (_V, _S.HELLO_RECEIVED, _OUT, _F.CHALLENGE): _S.AWAIT_AUTH,
    (_V, _S.AWAIT_AUTH, _IN, _F.AUTH): _S.AUTH_RECEIVED,
    (_V, _S.AUTH_RECEIVED, _OUT, _F.WELCOME): _S.READY,
    (_V, _S.READY, _IN, _F.OBS_BATCH): _S.READY,
    (_V, _S.READY, _IN, _F.STATUS_REQUEST): _S.READY,
    (_V, _S.READY, _OUT, _F.ACK): _S.READY,
    (_V, _S.READY, _OUT, _F.ACTIONS): _S.READY,
    (_V, _S.READY, _OUT, _F.STATUS): _S.READY,
    # --- heavy lane (rule 3) -------------------------------------------------
    (_C, _S.READY, _OUT, _F.INFER_REQUEST): _S.READY,  # edge -> gateway
    (_V, _S.READY, _IN, _F.INFER_REQUEST): _S.READY,
    (_V, _S.READY, _OUT, _F.INFER_REQUEST): _S.READY,  # gateway -> inference node
    (_C, _S.READY, _IN, _F.INFER_REQUEST): _S.READY,
    (_C, _S.READY, _OUT, _F.INFER_RESULT): _S.READY,  # inference node -> gateway
    (_V, _S.READY, _IN, _F.INFER_RESULT): _S.READY,
    # --- placement administration (rule 3) -----------------------------------
    (_C, _S.READY, _OUT, _F.PLACEMENT_REQUEST): _S.READY,  # admin -> gateway
    (_V, _S.READY, _IN, _F.PLACEMENT_REQUEST): _S.READY,
    (_V, _S.READY, _OUT, _F.PLACEMENT): _S.READY,  # gateway -> admin
    (_C, _S.READY, _IN, _F.PLACEMENT): _S.READY,
    # --- module distribution (rule 3) ----------------------------------------
    (_V, _S.READY, _OUT, _F.MODULE_ASSIGN): _S.READY,  # gateway -> edge
    (_C, _S.READY, _IN, _F.MODULE_ASSIGN): _S.READY,
    (_C, _S.READY, _OUT, _F.MODULE_REPORT): _S.READY,  # edge -> gateway
    (_V, _S.READY, _IN, _F.MODULE_REPORT): _S.READY,
    (_C, _S.READY, _OUT, _F.BLOB_REQUEST): _S.READY,  # edge -> gateway
    (_V, _S.READY, _IN, _F.BLOB_REQUEST): _S.READY,
    (_V, _S.READY, _OUT, _F.BLOB_CHUNK): _S.READY,  # gateway -> edge
    (_C, _S.READY, _IN, _F.BLOB_CHUNK): _S.READY,
    # --- placement of an edge's agents (rule 3) ------------------------------
    (_V, _S.READY, _OUT, _F.ASSIGN): _S.READY,  # gateway -> edge
    (_C, _S.READY, _IN, _F.ASSIGN): _S.READY,
    (_C, _S.READY, _OUT, _F.CHECKPOINT): _S.READY,  # edge -> gateway
    (_V, _S.READY, _IN, _F.CHECKPOINT): _S.READY,
    # --- the gateway ring sends an edge elsewhere (rule 3; BYE follows) ------
    (_V, _S.AUTH_RECEIVED, _OUT, _F.REDIRECT): _S.AUTH_RECEIVED,
    (_C, _S.AWAIT_WELCOME, _IN, _F.REDIRECT): _S.AWAIT_WELCOME,
    (_V, _S.READY, _OUT, _F.REDIRECT): _S.READY,
    (_C, _S.READY, _IN, _F.REDIRECT): _S.READY,
}
"""(side, state, direction, frame type) -> next state. Rules 4 and 5 are added below."""

_REGISTRY_FRAMES = (_F.REGISTRY_INDEX, _F.REGISTRY_REQUEST, _F.REGISTRY_CHUNK)
for _side in Side:
    for _dir in Direction:
        for _frame in (_F.STATE_SYNC, _F.STATE_UPDATE, *_REGISTRY_FRAMES):
            TRANSITIONS[(_side, _S.READY, _dir, _frame)] = _S.READY  # rule 3, both ways

_OPEN_STATES: dict[Side, tuple[SessionState, ...]] = {
    _C: (_S.START, _S.AWAIT_CHALLENGE, _S.CHALLENGED, _S.AWAIT_WELCOME, _S.READY),
    _V: (_S.AWAIT_HELLO, _S.HELLO_RECEIVED, _S.AWAIT_AUTH, _S.AUTH_RECEIVED, _S.READY),
}
for _side, _states in _OPEN_STATES.items():
    for _state in _states:
        for _dir in Direction:
            TRANSITIONS[(_side, _state, _dir, _F.ERROR)] = _state  # rule 4
            TRANSITIONS[(_side, _state, _dir, _F.BYE)] = _S.CLOSED  # rule 5

SENDER_ROLES: dict[tuple[Side, FrameType], frozenset[Role]] = {
    (_C, _F.OBS_BATCH): frozenset({Role.EDGE}),
    (_C, _F.STATUS_REQUEST): frozenset({Role.EDGE, Role.ADMIN}),
    (_V, _F.STATUS): frozenset({Role.EDGE, Role.ADMIN}),
    (_C, _F.INFER_REQUEST): frozenset({Role.EDGE}),
    (_C, _F.INFER_RESULT): frozenset({Role.INFERENCE}),
    (_V, _F.INFER_REQUEST): frozenset({Role.INFERENCE}),
    (_C, _F.PLACEMENT_REQUEST): frozenset({Role.ADMIN}),
    (_V, _F.PLACEMENT): frozenset({Role.ADMIN}),
    (_V, _F.MODULE_ASSIGN): frozenset({Role.EDGE}),
    (_C, _F.MODULE_REPORT): frozenset({Role.EDGE}),
    (_C, _F.BLOB_REQUEST): frozenset({Role.EDGE}),
    (_V, _F.BLOB_CHUNK): frozenset({Role.EDGE}),
    (_V, _F.ASSIGN): frozenset({Role.EDGE}),
    (_C, _F.CHECKPOINT): frozenset({Role.EDGE}),
    (_V, _F.REDIRECT): frozenset({Role.EDGE}),
    **{(side, frame): frozenset({Role.GATEWAY}) for side in Side for frame in _REGISTRY_FRAMES},
}
"""(sending side, frame type) -> the roles the session's client (its HELLO's ``role``)
must have (rule 3): a client of another role may not send it, and the server sends it
to no client of another role."""


FEATURE_GATED: dict[FrameType, str] = {
    _F.STATE_SYNC: FEATURE_STATE,
    _F.STATE_UPDATE: FEATURE_STATE,
    _F.INFER_REQUEST: FEATURE_HEAVY,
    _F.INFER_RESULT: FEATURE_HEAVY,
    _F.PLACEMENT_REQUEST: FEATURE_PLACEMENT,
    _F.PLACEMENT: FEATURE_PLACEMENT,
    _F.MODULE_ASSIGN: FEATURE_MODULES,
    _F.MODULE_REPORT: FEATURE_MODULES,
    _F.BLOB_REQUEST: FEATURE_MODULES,
    _F.BLOB_CHUNK: FEATURE_MODULES,
    _F.ASSIGN: FEATURE_PLACEMENT,
    _F.CHECKPOINT: FEATURE_PLACEMENT,
    _F.REDIRECT: FEATURE_REDIRECT,
    **dict.fromkeys(_REGISTRY_FRAMES, FEATURE_REGISTRY),
}
"""Frame types allowed only once their feature was negotiated (rule 3); before READY
(REDIRECT only), once the client's HELLO named it."""


def role_names(roles: frozenset[Role]) -> str:
    """``edge``, ``admin/edge``: the roles of a SENDER_ROLES entry, for a message."""
    return "/".join(sorted(role.value for role in roles))


def next_state(
    side: Side, state: SessionState, direction: Direction, frame_type: FrameType
) -> SessionState | None:
    """The state after ``frame_type`` goes ``direction``, or None when it is forbidden."""
    return TRANSITIONS.get((side, state, direction, frame_type))


__all__ = [
    "FEATURE_GATED",
    "SENDER_ROLES",
    "TRANSITIONS",
    "Direction",
    "SessionState",
    "Side",
    "next_state",
    "role_names",
]
