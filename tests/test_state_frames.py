"""Every holder of a swarm document handles state frames the same way (``StateSession``).

The gateway's service, an edge's link and an admin's mirror answer a
STATE_SYNC with what the peer lacks, merge a STATE_UPDATE, and refuse a
malformed one with an ERROR frame carrying the error's code, leaving their
document untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from edgeswarm.client.admin import StateMirror
from edgeswarm.client.session import GatewayClient
from edgeswarm.edge.state_link import StateLink
from edgeswarm.gateway.state_service import StateService
from edgeswarm.state import StateSession, SwarmDocument, Writers
from edgeswarm.wire import (
    Error,
    ErrorCode,
    StateSyncRequest,
    StateSyncRequested,
    StateUpdate,
    StateUpdateReceived,
    Welcome,
)

BAD_VECTOR = b"\xff" * 9
BAD_UPDATE = b"\x07not an update"


class RecordingClient:
    """What a state handler uses of a ``GatewayClient``: its WELCOME and ``send_state``."""

    def __init__(self) -> None:
        self.welcome = Welcome(
            version=2, session_id="s", gateway_id="gw", max_frame_bytes=1, max_batch_agents=1
        )
        self.sent: list[StateSyncRequest | StateUpdate | Error] = []

    def send_state(self, frame: StateSyncRequest | StateUpdate | Error) -> None:
        self.sent.append(frame)


class Peer:
    state_peer_id = "peer"
    state_writers: Writers = None  # a replica: relays every writer's entries
    state_may_write = True

    def send_state_update(self, update: bytes) -> None:
        pass


def _answers_of_handler(
    handler: StateLink | StateMirror, events: list[StateSyncRequested | StateUpdateReceived]
) -> list[list[StateSyncRequest | StateUpdate | Error]]:
    client = RecordingClient()
    handler.session_ready(cast(GatewayClient, client))
    answers = []
    for event in events:
        client.sent.clear()
        handler.state_received(cast(GatewayClient, client), event)
        answers.append(list(client.sent))
    return answers


def _answers(
    kind: str, tmp_path: Path, events: list[StateSyncRequested | StateUpdateReceived]
) -> list[list[StateSyncRequest | StateUpdate | Error]]:
    if kind == "gateway":
        with StateService(tmp_path / "gw", writer_id="gw") as service:
            peer = Peer()
            service.sync_request(peer)
            return [list(service.receive(peer, event)) for event in events]
    if kind == "edge":
        with StateLink(tmp_path / "edge", writer_id="edge") as link:
            return _answers_of_handler(link, events)
    return _answers_of_handler(StateMirror(), events)


@pytest.mark.parametrize("kind", ["gateway", "edge", "admin"])
def test_malformed_state_frames_are_refused_alike(kind: str, tmp_path: Path) -> None:
    answers = _answers(
        kind,
        tmp_path,
        [StateSyncRequested(state_vector=BAD_VECTOR), StateUpdateReceived(update=BAD_UPDATE)],
    )
    codes = [[frame.code for frame in frames if isinstance(frame, Error)] for frames in answers]
    assert codes == [[ErrorCode.MALFORMED_STATE_VECTOR], [ErrorCode.MALFORMED_UPDATE]]


@pytest.mark.parametrize("kind", ["gateway", "edge", "admin"])
def test_a_sync_request_is_answered_with_what_the_peer_lacks(kind: str, tmp_path: Path) -> None:
    other = SwarmDocument("other")
    [frames] = _answers(kind, tmp_path, [StateSyncRequested(state_vector=other.state_vector())])
    [answer] = frames
    assert isinstance(answer, StateUpdate)
    other.apply_update(answer.update)  # decodes: a real update


def test_a_session_reports_only_updates_that_change_the_document() -> None:
    ours, theirs = SwarmDocument("ours"), SwarmDocument("theirs")
    applied: list[bytes] = []
    session = StateSession(ours, peer_id="theirs", on_update=applied.append)
    theirs.counter_add("g/c", 2)
    update = theirs.encode_update(ours.state_vector())
    assert session.receive(StateUpdateReceived(update=update)) == []
    assert session.receive(StateUpdateReceived(update=update)) == []  # a duplicate
    assert applied == [update]
    assert session.updates_merged == 2
    assert ours.counter_value("g/c") == 2
