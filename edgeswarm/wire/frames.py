"""Frames of the protocol (``PROTOCOL_VERSION``): one frozen dataclass per frame type.

Field meanings, types and limits are specified in ``docs/protocol.md``;
``codec.py`` turns these into bytes and back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .module_frames import BlobChunk as BlobChunk
from .module_frames import BlobRequest as BlobRequest
from .module_frames import ModuleAssign as ModuleAssign
from .module_frames import ModuleAssignment as ModuleAssignment
from .module_frames import ModuleReport as ModuleReport
from .placement_frames import Assign as Assign
from .placement_frames import Checkpoint as Checkpoint
from .placement_frames import Redirect as Redirect
from .registry_frames import RegistryChunk as RegistryChunk
from .registry_frames import RegistryIndex as RegistryIndex
from .registry_frames import RegistryRequest as RegistryRequest

PROTOCOL_VERSION = 2
ALPN = "edgeswarm/1"


class FrameType(IntEnum):
    """Value of the ``t`` key of every frame. Part of the protocol."""

    HELLO = 1
    WELCOME = 2
    OBS_BATCH = 3
    ACK = 4
    ACTIONS = 5
    STATUS_REQUEST = 6
    STATUS = 7
    ERROR = 8
    BYE = 9
    CHALLENGE = 10
    AUTH = 11
    STATE_SYNC = 12
    STATE_UPDATE = 13
    INFER_REQUEST = 14
    INFER_RESULT = 15
    PLACEMENT_REQUEST = 16
    PLACEMENT = 17
    MODULE_ASSIGN = 18
    MODULE_REPORT = 19
    BLOB_REQUEST = 20
    BLOB_CHUNK = 21
    ASSIGN = 22
    CHECKPOINT = 23
    REGISTRY_INDEX = 24
    REGISTRY_REQUEST = 25
    REGISTRY_CHUNK = 26
    REDIRECT = 27


class Role(StrEnum):
    """What a client is; decides which frames it may send."""

    EDGE = "edge"
    ADMIN = "admin"
    INFERENCE = "inference"
    GATEWAY = "gateway"
    """Another gateway replicating shared state with this one."""


FEATURE_STATE = "state"
"""Feature name of the shared-state frames (STATE_SYNC, STATE_UPDATE)."""
FEATURE_ACK_THROUGH = "ack_through"
"""Feature name of cumulative ACKs: each ACK acknowledges every OBS_BATCH of the
session up to its ``seq`` (one ACK per durable-log commit group, not per batch)."""
FEATURE_HEAVY = "heavy"
"""Feature name of the heavy inference lane: INFER_REQUEST (edge -> gateway -> inference
node), INFER_RESULT (node -> gateway) and results to edges as ACTIONS with a ``request_id``."""
FEATURE_SEQ_EPOCH = "seq_epoch"
"""Feature name of sequence epochs: an edge's ``seq`` numbers belong to the epoch of
its spool (HELLO ``seq_epoch``); a new spool starts a new epoch instead of reusing
numbers the gateway already holds."""
FEATURE_PLACEMENT = "placement"
"""Feature name of placement administration: PLACEMENT_REQUEST (admin -> gateway) and
its answer PLACEMENT (swarm agents, edges, shards; docs/protocol.md section 13); with an
edge, ASSIGN (gateway -> edge: the agents it runs) and CHECKPOINT (edge -> gateway: their
state rows)."""
FEATURE_MODULES = "modules"
"""Feature name of module distribution: MODULE_ASSIGN, MODULE_REPORT, BLOB_REQUEST and
BLOB_CHUNK (``docs/protocol.md`` section 14)."""
FEATURE_REGISTRY = "registry"
"""Feature name of module registry replication between gateways: REGISTRY_INDEX,
REGISTRY_REQUEST and REGISTRY_CHUNK, both ways, role ``gateway`` only
(``docs/protocol.md`` section 15)."""
FEATURE_REDIRECT = "redirect"
"""Feature name of REDIRECT: gateway -> edge, the gateway ring names another owner
(``docs/protocol.md`` section 13.6); it may come instead of WELCOME."""
FEATURES: frozenset[str] = frozenset(
    {
        FEATURE_STATE,
        FEATURE_ACK_THROUGH,
        FEATURE_HEAVY,
        FEATURE_SEQ_EPOCH,
        FEATURE_PLACEMENT,
        FEATURE_MODULES,
        FEATURE_REGISTRY,
        FEATURE_REDIRECT,
    }
)
"""Every optional feature this implementation speaks (negotiated in HELLO / WELCOME)."""


PUBLIC_KEY_BYTES = 32
"""Length of a raw ed25519 public key."""
SIGNATURE_BYTES = 64
"""Length of an ed25519 signature."""
NONCE_BYTES = 32
"""Length of the gateway's challenge nonce."""


@dataclass(frozen=True)
class Hello:
    """First frame of a client."""

    version: int
    """Protocol version the client speaks."""
    role: Role
    """Edge, admin or inference."""
    peer_id: str
    """Stable name of the client (an edge's id), 1 to 128 characters."""
    public_key: bytes
    """The client's raw ed25519 public key (32 bytes); it proves it with AUTH."""
    agents: int = 0
    """Number of agents the edge runs; 0 for other roles."""
    join_token: str | None = None
    """Enrollment token issued by the gateway's operator, for a key not enrolled yet."""
    features: tuple[str, ...] = ()
    """Optional features the client speaks (e.g. ``"state"``); unknown ones are ignored."""
    models: tuple[str, ...] = ()
    """Role ``inference``: the models the node serves (feature ``heavy``); empty otherwise."""
    seq_epoch: int | None = None
    """Edge with feature ``seq_epoch``: the epoch its ``seq`` numbers belong to, chosen
    at random when its spool was created (0..2**63-1); a new spool is a new epoch."""
    state_incarnation: int | None = None
    """Peer with feature ``state``: the incarnation its swarm-state writer id is derived
    from (``state.schema.client_id_for(peer_id, incarnation)``; 0..2**63-1)."""


@dataclass(frozen=True)
class Challenge:
    """The gateway's answer to HELLO: sign this nonce to prove your key."""

    nonce: bytes
    """32 random bytes, fresh for this session."""
    gateway_id: str
    """Name of the gateway (part of what is signed)."""


@dataclass(frozen=True)
class Auth:
    """The client's proof of its key: a signature over the challenge (see ``auth_message``)."""

    signature: bytes
    """ed25519 signature (64 bytes) of ``auth_message(...)``."""


@dataclass(frozen=True)
class Welcome:
    """The gateway's answer to an accepted HELLO."""

    version: int
    """Protocol version the session will use."""
    session_id: str
    """Identifier of this session, unique per gateway."""
    gateway_id: str
    """Name of the gateway."""
    max_frame_bytes: int
    """Largest payload the gateway accepts in one frame."""
    max_batch_agents: int
    """Largest number of agents the gateway accepts in one OBS_BATCH."""
    credit: int = 0
    """OBS_BATCH frames the client may have unacknowledged (0 for non-edge roles)."""
    resume_seq: int = 0
    """Highest sequence number the gateway holds durably from this edge (0: none)."""
    features: tuple[str, ...] = ()
    """Features of the client's HELLO the gateway also speaks: the session may use them."""
    infer_window: int = 0
    """Feature ``heavy``, role ``edge``: INFER_REQUEST frames the client may have unanswered."""
    lease_ms: int = 0
    """Feature ``placement``, role ``edge``: how long after sending a request the gateway
    answered the edge may step its placed agents (0: no lease, docs/protocol.md 13.5)."""
    lease_ticks: int = 0
    """Feature ``placement``, role ``edge``: ticks the edge may step past the last tick
    whose batches were all acknowledged (0: no bound)."""


@dataclass(frozen=True, eq=False)
class ObservationBatch:
    """Observations and rewards of n agents for one tick."""

    seq: int
    """Per-edge sequence number: 1 for the edge's first batch ever (of its epoch), +1
    each, across sessions; 0..2**63-1."""
    tick: int
    """Edge tick the observations were taken at; 0..2**63-1."""
    agent_ids: NDArray[np.uint32]
    """Shape (n,), dtype uint32."""
    observations: NDArray[np.float32]
    """Shape (n, obs_dim), dtype float32."""
    rewards: NDArray[np.float32]
    """Shape (n,), dtype float32."""

    @property
    def count(self) -> int:
        """Number of agents in the batch."""
        return int(self.agent_ids.shape[0])


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """What a checked OBS_BATCH says without its other arrays
    (``decode_payload(batch_arrays=False)``); ``seq``, ``tick`` as in :class:`ObservationBatch`."""

    seq: int
    tick: int
    count: int
    """Number of agents in the batch."""
    agent_ids: NDArray[np.uint32] | None = field(default=None, compare=False, repr=False)
    """The batch's agent ids (a read-only view on the decoded payload); None if not known."""


@dataclass(frozen=True)
class Ack:
    """The gateway accepted the batch with this sequence number (and, in a session
    with the ``ack_through`` feature, every batch of the session before it)."""

    seq: int
    """Sequence number of the acknowledged OBS_BATCH (with ``ack_through``: the last one)."""
    accepted: int
    """Number of observations accepted from it (also when it was a duplicate); with
    ``ack_through``: from every batch this ACK newly acknowledges."""
    credit: int = 0
    """OBS_BATCH frames the client may have unacknowledged from now on (absolute window)."""


@dataclass(frozen=True, eq=False)
class Actions:
    """Actions the gateway imposes on agents of an edge, applied at the next tick."""

    tick: int
    """Gateway's notion of the tick the actions are for (informational)."""
    agent_ids: NDArray[np.uint32]
    """Shape (n,), dtype uint32."""
    actions: NDArray[np.float32]
    """Shape (n, act_dim), dtype float32."""
    request_id: int | None = None
    """Feature ``heavy``: the INFER_REQUEST these are the results of (None: plain actions)."""
    status: int = 0
    """With ``request_id``: an :class:`InferStatus`; not OK carries no rows."""


class InferStatus(IntEnum):
    """Outcome of one INFER_REQUEST (``status`` of INFER_RESULT and of a result ACTIONS)."""

    OK = 0
    """The outputs are the model's, one row per requested agent."""
    TIMEOUT = 1
    """The request's deadline passed before a result: no outputs."""
    REJECTED = 2
    """Not taken (queue or window full, no node for the model now): try again later."""
    FAILED = 3
    """The model failed on it or cannot take it (unknown model, wrong width)."""


@dataclass(frozen=True, eq=False)
class InferRequest:
    """Rows for a heavy model: edge -> gateway, and a batch of them gateway -> node."""

    request_id: int
    """Sender's id of the request, unique among its unanswered ones in the session."""
    model: str
    """Name of the model, 1 to 128 characters."""
    deadline_ms: int
    """Milliseconds the sender waits for the result, counted from receipt (1 to 600 000)."""
    tick: int
    """Edge tick the inputs were taken at (informational; 0 from the gateway)."""
    agent_ids: NDArray[np.uint32]
    """Shape (n,), dtype uint32: the agents the rows are for."""
    inputs: NDArray[np.float32]
    """Shape (n, k), dtype float32: one input row per agent."""

    @property
    def count(self) -> int:
        """Number of rows."""
        return int(self.agent_ids.shape[0])


@dataclass(frozen=True, eq=False)
class InferResult:
    """An inference node's answer to one INFER_REQUEST (a batch) of the gateway."""

    request_id: int
    """The ``request_id`` of the INFER_REQUEST answered."""
    status: int
    """An :class:`InferStatus`."""
    outputs: NDArray[np.float32]
    """Shape (n, k), dtype float32: one output row per input row when OK; (0, 1) otherwise."""
    message: str = ""
    """Why, when the status is not OK."""


@dataclass(frozen=True)
class StatusRequest:
    """Ask the gateway for its status."""


@dataclass(frozen=True)
class EdgeStatus:
    """One edge as the gateway sees it."""

    peer_id: str
    """The edge's id from its HELLO."""
    connected: bool
    """Whether a session with the edge is open now."""
    agents: int
    """Agents the edge announced."""
    batches: int
    """OBS_BATCH frames accepted from this edge."""
    observations: int
    """Observations accepted from this edge."""
    bytes: int
    """Payload bytes of accepted OBS_BATCH frames."""
    last_seq: int
    """Highest sequence number accepted."""
    errors: int
    """ERROR frames sent to this edge."""
    last_seen: float = 0.0
    """When the gateway last heard from the edge (its session opened or a batch of it
    committed), Unix seconds; 0: not since the gateway started."""
    address: str = ""
    """``host:port`` the edge's last session came from; empty: none since the start."""


@dataclass(frozen=True)
class Status:
    """The gateway's status."""

    gateway_id: str
    """Name of the gateway."""
    uptime_s: float
    """Seconds since the gateway started."""
    edges: tuple[EdgeStatus, ...] = field(default_factory=tuple)
    """Every edge seen since start, connected or not."""


@dataclass(frozen=True)
class Error:
    """A protocol or application error; the session goes on unless a BYE follows."""

    code: int
    """An ``ErrorCode`` value."""
    message: str
    """Human-readable explanation."""
    seq: int | None = None
    """Sequence number of the OBS_BATCH the error is about, if any."""


@dataclass(frozen=True)
class StateSyncRequest:
    """STATE_SYNC: the sender's state vector; the receiver answers with what it lacks."""

    state_vector: bytes
    """Yrs v1 state vector of the sender's swarm document."""


@dataclass(frozen=True)
class StateUpdate:
    """STATE_UPDATE: one Yrs v1 update of the swarm document (a batch of changes)."""

    update: bytes
    """Yrs v1 update bytes; applying it twice or out of order is harmless."""


@dataclass(frozen=True)
class Bye:
    """Last frame of a session from the side that sends it."""

    code: int
    """An ``ErrorCode`` value; NO_ERROR for a normal close."""
    reason: str = ""
    """Human-readable explanation."""


@dataclass(frozen=True)
class PlacementRequest:
    """Feature ``placement``, role ``admin``: one placement operation (``op``) on the gateway."""

    request_id: int
    """Chosen by the client; the PLACEMENT answer carries it back."""
    op: str
    """The operation, e.g. ``agents.add`` (docs/protocol.md section 13 lists them)."""
    args: dict[str, Any] = field(default_factory=dict)
    """The operation's arguments: a map of strings to msgpack values."""


@dataclass(frozen=True)
class PlacementReply:
    """Feature ``placement``: the gateway's answer to one PLACEMENT_REQUEST."""

    request_id: int
    """The request answered."""
    ok: bool
    """Whether the operation was done; when false ``message`` says why, in one line."""
    result: dict[str, Any] = field(default_factory=dict)
    """What the operation returns (a JSON-ready map)."""
    message: str = ""
    """Why it failed (empty when ``ok``)."""


Frame = (
    Hello
    | Challenge
    | Auth
    | Welcome
    | ObservationBatch
    | Ack
    | Actions
    | StatusRequest
    | Status
    | Error
    | Bye
    | StateSyncRequest
    | StateUpdate
    | InferRequest
    | InferResult
    | PlacementRequest
    | PlacementReply
    | ModuleAssign
    | ModuleReport
    | BlobRequest
    | BlobChunk
    | Assign
    | Checkpoint
    | Redirect
    | RegistryIndex
    | RegistryRequest
    | RegistryChunk
)

FRAME_TYPES: dict[type[Frame], FrameType] = {
    Hello: FrameType.HELLO,
    Challenge: FrameType.CHALLENGE,
    Auth: FrameType.AUTH,
    Welcome: FrameType.WELCOME,
    ObservationBatch: FrameType.OBS_BATCH,
    Ack: FrameType.ACK,
    Actions: FrameType.ACTIONS,
    StatusRequest: FrameType.STATUS_REQUEST,
    Status: FrameType.STATUS,
    Error: FrameType.ERROR,
    Bye: FrameType.BYE,
    StateSyncRequest: FrameType.STATE_SYNC,
    StateUpdate: FrameType.STATE_UPDATE,
    InferRequest: FrameType.INFER_REQUEST,
    InferResult: FrameType.INFER_RESULT,
    PlacementRequest: FrameType.PLACEMENT_REQUEST,
    PlacementReply: FrameType.PLACEMENT,
    ModuleAssign: FrameType.MODULE_ASSIGN,
    ModuleReport: FrameType.MODULE_REPORT,
    BlobRequest: FrameType.BLOB_REQUEST,
    BlobChunk: FrameType.BLOB_CHUNK,
    Assign: FrameType.ASSIGN,
    Checkpoint: FrameType.CHECKPOINT,
    Redirect: FrameType.REDIRECT,
    RegistryIndex: FrameType.REGISTRY_INDEX,
    RegistryRequest: FrameType.REGISTRY_REQUEST,
    RegistryChunk: FrameType.REGISTRY_CHUNK,
}


AUTH_CONTEXT = b"edgeswarm-auth-v2\x00"


def auth_message(*, nonce: bytes, gateway_id: str, hello: Hello) -> bytes:
    """The bytes a client signs to answer a CHALLENGE (``docs/protocol.md``, AUTH)."""
    parts = (
        AUTH_CONTEXT,
        nonce,
        gateway_id.encode(),
        b"\x00",
        hello.peer_id.encode(),
        b"\x00",
        Role(hello.role).value.encode(),
        b"\x00",
        hello.public_key,
    )
    return b"".join(parts)
