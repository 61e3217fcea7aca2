"""Events a ``Session`` hands out from ``next_event()``.

Adapters drain them in one loop::

    while (event := session.next_event()) is not None:
        match event:
            case ObservationsReceived(seq=seq, payload=payload): ...
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .errors import RemoteProtocolError
from .frames import (
    Ack,
    Actions,
    Assign,
    Auth,
    BlobChunk,
    BlobRequest,
    Challenge,
    Checkpoint,
    Error,
    Frame,
    Hello,
    InferRequest,
    InferResult,
    ModuleAssign,
    ModuleReport,
    ObservationBatch,
    PlacementReply,
    PlacementRequest,
    Redirect,
    RegistryChunk,
    RegistryIndex,
    RegistryRequest,
    StateSyncRequest,
    StateUpdate,
    Status,
    StatusRequest,
    Welcome,
)


@dataclass(frozen=True)
class HelloReceived:
    """Server side: a client introduced itself; answer with ``accept()`` or ``refuse()``."""

    hello: Hello
    """The client's HELLO."""


@dataclass(frozen=True)
class ChallengeReceived:
    """Client side: the gateway wants proof of our key; answer with ``authenticate()``."""

    challenge: Challenge
    """The CHALLENGE frame."""


@dataclass(frozen=True)
class AuthReceived:
    """Server side: the client signed our challenge; check it, then ``accept()`` or ``refuse()``."""

    auth: Auth
    """The AUTH frame."""


@dataclass(frozen=True)
class Welcomed:
    """Client side: the gateway accepted our HELLO; the session is ready."""

    welcome: Welcome
    """The gateway's WELCOME."""


@dataclass(frozen=True)
class ObservationsReceived:
    """Server side: an edge sent a batch of observations."""

    seq: int
    """The batch's per-edge sequence number."""
    tick: int
    """Edge tick of the observations."""
    count: int
    """Number of agents in the batch."""
    size: int
    """Payload bytes of the frame."""
    payload: bytes
    """The frame's msgpack payload as received (what a durable log stores)."""
    batch: ObservationBatch | None = None
    """The decoded batch (arrays are read-only views on the received bytes); None
    when the session was made with ``SessionConfig(batch_arrays=False)``."""
    agent_ids: NDArray[np.uint32] | None = None
    """The batch's agent ids (a read-only view on the received bytes, checked)."""


@dataclass(frozen=True)
class AckReceived:
    """Client side: the gateway acknowledged a batch."""

    ack: Ack
    """The ACK frame."""


@dataclass(frozen=True)
class ActionsReceived:
    """Client side: the gateway sent actions to impose on agents."""

    actions: Actions
    """The ACTIONS frame."""


@dataclass(frozen=True)
class StatusRequested:
    """Server side: the client asked for the gateway's status."""


@dataclass(frozen=True)
class StatusReceived:
    """Client side: the gateway's status arrived."""

    status: Status
    """The STATUS frame."""


@dataclass(frozen=True)
class StateSyncRequested:
    """Both sides: the peer sent its state vector; answer with a STATE_UPDATE of what it lacks."""

    state_vector: bytes
    """The peer's Yrs v1 state vector (not validated by the wire layer)."""


@dataclass(frozen=True)
class StateUpdateReceived:
    """Both sides: the peer sent a swarm-state update to merge."""

    update: bytes
    """Yrs v1 update bytes (not validated by the wire layer: the document does that)."""


@dataclass(frozen=True)
class InferRequestReceived:
    """Server: an edge asks for heavy inference; client (an inference node): run this batch."""

    request: InferRequest
    """The INFER_REQUEST (arrays are read-only views on the received bytes)."""


@dataclass(frozen=True)
class PlacementRequested:
    """Server side: an admin asked for a placement operation (feature ``placement``)."""

    request: PlacementRequest
    """The PLACEMENT_REQUEST."""


@dataclass(frozen=True)
class PlacementReplied:
    """Client side: the gateway answered a PLACEMENT_REQUEST."""

    reply: PlacementReply
    """The PLACEMENT frame."""


@dataclass(frozen=True)
class InferResultReceived:
    """Server side: an inference node answered one of our INFER_REQUESTs."""

    result: InferResult
    """The INFER_RESULT."""


@dataclass(frozen=True)
class ModulesAssigned:
    """Edge side: the gateway says which module versions our agents run now."""

    assign: ModuleAssign
    """The MODULE_ASSIGN (its manifests are still to be verified)."""


@dataclass(frozen=True)
class ModuleReportReceived:
    """Server side: an edge reported how a rolled-out version fared."""

    report: ModuleReport


@dataclass(frozen=True)
class BlobRequested:
    """Server side: an edge asks for a chunk of a module blob."""

    request: BlobRequest


@dataclass(frozen=True)
class BlobChunkReceived:
    """Edge side: a chunk of a module blob we asked for."""

    chunk: BlobChunk


@dataclass(frozen=True)
class RegistryFrameReceived:
    """Either side, role ``gateway``: a frame of registry replication from the peer
    gateway (REGISTRY_INDEX, REGISTRY_REQUEST or REGISTRY_CHUNK; feature ``registry``)."""

    frame: RegistryIndex | RegistryRequest | RegistryChunk


@dataclass(frozen=True)
class AgentsAssigned:
    """Edge side: the gateway says (part of) which agents we run at a placement epoch."""

    assign: Assign


@dataclass(frozen=True)
class CheckpointReceived:
    """Server side: an edge sent state rows of its agents."""

    checkpoint: Checkpoint


@dataclass(frozen=True)
class Redirected:
    """Edge side: the gateway sends us to the gateway that owns us (BYE follows)."""

    redirect: Redirect


@dataclass(frozen=True)
class ErrorReceived:
    """The peer reported an error about something we sent."""

    error: Error
    """The ERROR frame."""


@dataclass(frozen=True)
class ProtocolViolation:
    """The peer broke the protocol; an ERROR frame was queued for it."""

    error: RemoteProtocolError
    """What was wrong; ``error.fatal`` tells whether the session closed because of it."""


@dataclass(frozen=True)
class SessionClosed:
    """The session is over: the peer said BYE, we did, or a fatal error or timeout ended it."""

    code: int
    """``ErrorCode`` value of the close."""
    reason: str
    """Human-readable explanation."""
    by_peer: bool
    """True when the peer sent the BYE."""


Event = (
    HelloReceived
    | ChallengeReceived
    | AuthReceived
    | Welcomed
    | ObservationsReceived
    | AckReceived
    | ActionsReceived
    | StatusRequested
    | StatusReceived
    | StateSyncRequested
    | StateUpdateReceived
    | InferRequestReceived
    | InferResultReceived
    | PlacementRequested
    | PlacementReplied
    | ModulesAssigned
    | AgentsAssigned
    | Redirected
    | CheckpointReceived
    | ModuleReportReceived
    | BlobRequested
    | BlobChunkReceived
    | RegistryFrameReceived
    | ErrorReceived
    | ProtocolViolation
    | SessionClosed
)


def frame_event(frame: Frame) -> Event:
    """The event a received frame makes, for frames whose receipt changes nothing in
    the session itself (HELLO, WELCOME, OBS_BATCH, ACK and BYE do; ``Session`` handles
    those)."""
    match frame:
        case Challenge():
            return ChallengeReceived(challenge=frame)
        case Auth():
            return AuthReceived(auth=frame)
        case Actions():
            return ActionsReceived(actions=frame)
        case StatusRequest():
            return StatusRequested()
        case Status():
            return StatusReceived(status=frame)
        case StateSyncRequest():
            return StateSyncRequested(state_vector=frame.state_vector)
        case StateUpdate():
            return StateUpdateReceived(update=frame.update)
        case InferRequest():
            return InferRequestReceived(request=frame)
        case InferResult():
            return InferResultReceived(result=frame)
        case PlacementRequest():
            return PlacementRequested(request=frame)
        case PlacementReply():
            return PlacementReplied(reply=frame)
        case ModuleAssign():
            return ModulesAssigned(assign=frame)
        case ModuleReport():
            return ModuleReportReceived(report=frame)
        case BlobRequest():
            return BlobRequested(request=frame)
        case BlobChunk():
            return BlobChunkReceived(chunk=frame)
        case Assign():
            return AgentsAssigned(assign=frame)
        case Checkpoint():
            return CheckpointReceived(checkpoint=frame)
        case Redirect():
            return Redirected(redirect=frame)
        case RegistryIndex() | RegistryRequest() | RegistryChunk():
            return RegistryFrameReceived(frame=frame)
        case Error():
            return ErrorReceived(error=frame)
    raise TypeError(f"{type(frame).__name__} is handled by the session itself")


__all__ = [
    "AckReceived",
    "ActionsReceived",
    "AgentsAssigned",
    "AuthReceived",
    "BlobChunkReceived",
    "BlobRequested",
    "ChallengeReceived",
    "CheckpointReceived",
    "ErrorReceived",
    "Event",
    "HelloReceived",
    "InferRequestReceived",
    "InferResultReceived",
    "ModuleReportReceived",
    "ModulesAssigned",
    "ObservationsReceived",
    "PlacementReplied",
    "PlacementRequested",
    "ProtocolViolation",
    "Redirected",
    "RegistryFrameReceived",
    "SessionClosed",
    "StateSyncRequested",
    "StateUpdateReceived",
    "StatusReceived",
    "StatusRequested",
    "Welcomed",
    "frame_event",
]
