"""The gateway's state service and the edge's state adapter, without sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeswarm.edge.policy.swarm_state import SwarmState, SwarmStateRefusedError
from edgeswarm.edge.state_link import DocumentSwarmState
from edgeswarm.gateway.state_service import StateService
from edgeswarm.state import StateSync, SwarmDocument, Writers
from edgeswarm.wire import (
    Error,
    ErrorCode,
    StateSyncRequested,
    StateUpdate,
    StateUpdateReceived,
)


class Peer:
    """A state peer that records what the service sends it."""

    state_writers: Writers = None  # a replica: relays every writer's entries
    state_may_write = True

    def __init__(self, name: str) -> None:
        self.state_peer_id = name
        self.sent: list[bytes] = []

    def send_state_update(self, update: bytes) -> None:
        self.sent.append(update)


def handshake(service: StateService, peer: Peer, document: SwarmDocument) -> StateSync:
    """Both STATE_SYNCs of a session, answered; returns the peer's side of the sync."""
    sync = StateSync(document)
    request = service.sync_request(peer)
    [answer] = service.receive(peer, StateSyncRequested(state_vector=sync.sync_request()))
    assert isinstance(answer, StateUpdate)
    sync.apply_update(answer.update)
    diff = sync.handle_sync_request(request.state_vector)
    assert service.receive(peer, StateUpdateReceived(update=diff)) == []
    return sync


def test_updates_are_applied_persisted_and_rebroadcast(tmp_path: Path) -> None:
    changes: list[int] = []
    service = StateService(tmp_path / "s", writer_id="gw", on_change=lambda: changes.append(1))
    a, b = Peer("a"), Peer("b")
    doc_a, doc_b = SwarmDocument("edge-a"), SwarmDocument("edge-b")
    sync_a, sync_b = handshake(service, a, doc_a), handshake(service, b, doc_b)
    doc_a.counter_add("g/c", 3)
    update = sync_a.data_to_send()
    assert update is not None
    assert service.receive(a, StateUpdateReceived(update=update)) == []
    assert changes == [1]
    assert service.broadcast() == 2  # b lacks it; a gets its echo once
    for update in b.sent:
        sync_b.apply_update(update)
    assert doc_b.counter_value("g/c") == 3
    # a duplicate changes nothing: not logged again, no broadcast
    assert service.receive(a, StateUpdateReceived(update=update)) == []
    assert changes == [1]
    service.close()
    reopened = StateService(tmp_path / "s", writer_id="gw")
    assert reopened.document.counter_value("g/c") == 3
    assert reopened.document.client_id != service.document.client_id  # new incarnation
    reopened.close()


def test_malformed_frames_are_refused_document_untouched(tmp_path: Path) -> None:
    refused: list[tuple[str | None, str]] = []
    service = StateService(
        tmp_path / "s", writer_id="gw", on_refused=lambda p, c: refused.append((p, c))
    )
    peer = Peer("vandal")
    doc = SwarmDocument("edge")
    handshake(service, peer, doc)
    doc.counter_add("g/c", 1)
    service.receive(peer, StateUpdateReceived(update=doc.encode_update()))
    before = service.document.encode_update()
    [error] = service.receive(peer, StateUpdateReceived(update=b"\x05\xff garbage"))
    assert isinstance(error, Error)
    assert error.code == ErrorCode.MALFORMED_UPDATE
    [error] = service.receive(peer, StateSyncRequested(state_vector=b"\x05\x80"))
    assert isinstance(error, Error)
    assert error.code == ErrorCode.MALFORMED_STATE_VECTOR
    assert service.document.encode_update() == before
    assert service.document.counter_value("g/c") == 1
    assert refused == [("vandal", "MALFORMED_UPDATE"), ("vandal", "MALFORMED_STATE_VECTOR")]
    assert service.updates_refused == 2
    service.close()


def test_document_adapter_is_a_swarm_state() -> None:
    state: SwarmState = DocumentSwarmState(SwarmDocument("edge"))
    assert state.flag_get("evade") is False  # unset reads as False, not None
    state.flag_set("evade", True)
    assert state.flag_get("evade") is True
    state.counter_add("anomalies", 2)  # no group: the fleet-wide "swarm" group
    state.counter_add("g/hits", 5)
    state.counter_add("g/hits", -1)
    state.set_add("g/seen", "r1")
    # refused updates are raised (the host import returns an error code), never dropped quietly
    with pytest.raises(SwarmStateRefusedError) as refused:
        state.counter_add("bad key!", 1)
    assert refused.value.part == "key"
    with pytest.raises(SwarmStateRefusedError) as refused:
        state.set_add("g/seen", "")
    assert refused.value.part == "item"
    snapshot = state.snapshot()
    assert snapshot.counters == {"g/hits": 4, "swarm/anomalies": 2}
    assert snapshot.sets == {"g/seen": frozenset({"r1"})}
    assert snapshot.flags == {"swarm/evade": True}
