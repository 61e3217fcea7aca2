"""StateSync: state-vector handshake, relaying, gateway replication, bad input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeswarm.bench.crdt import converge_after_partition
from edgeswarm.state import (
    MalformedStateVector,
    MalformedUpdate,
    StateSync,
    SwarmDocument,
    WriterReused,
)
from edgeswarm.state.vector import decode_state_vector, encode_state_vector


class Link:
    """Both ends of one connection, in memory."""

    def __init__(self, left: SwarmDocument, right: SwarmDocument) -> None:
        self.left, self.right = StateSync(left), StateSync(right)

    def handshake(self) -> None:
        left_request, right_request = self.left.sync_request(), self.right.sync_request()
        self.left.apply_update(self.right.handle_sync_request(left_request))
        self.right.apply_update(self.left.handle_sync_request(right_request))

    def roundtrip(self) -> int:
        """Deliver what each side has to send; how many updates moved."""
        moved = 0
        for src, dst in ((self.left, self.right), (self.right, self.left)):
            update = src.data_to_send()
            if update is not None:
                dst.apply_update(update)
                moved += 1
        return moved


def settle(links: list[Link]) -> None:
    for _ in range(100):
        if not sum(link.roundtrip() for link in links):
            return
    raise AssertionError("sync did not quiesce")


def test_handshake_sends_only_what_is_missing() -> None:
    edge, gateway = SwarmDocument("edge-0"), SwarmDocument("gw")
    for index in range(200):
        gateway.set_add("g/seen", f"resource-{index}")
    link = Link(edge, gateway)
    link.handshake()
    assert edge.snapshot() == gateway.snapshot()
    full = link.right.bytes_sent
    # The edge goes away, both sides write, the edge reconnects later.
    edge.counter_add("g/c", 1)
    gateway.set_add("g/seen", "resource-new")
    again = Link(edge, gateway)
    again.handshake()
    assert edge.snapshot() == gateway.snapshot()
    assert again.right.bytes_sent < full / 4  # by state vector, not a full resend


def test_data_to_send_relays_between_edges() -> None:
    gateway = SwarmDocument("gw")
    edges = [SwarmDocument(f"edge-{index}") for index in range(3)]
    links = [Link(edge, gateway) for edge in edges]
    for link in links:
        link.handshake()
        assert link.left.data_to_send() is None
    edges[0].counter_add("g/c", 2)
    edges[1].counter_add("g/c", 3)
    edges[2].set_add("g/s", "x")
    settle(links)
    for doc in [gateway, *edges]:
        assert doc.counter_value("g/c") == 5
        assert doc.set_items("g/s") == {"x"}
    assert all(link.roundtrip() == 0 for link in links)


def test_data_to_send_is_none_before_handshake() -> None:
    sync = StateSync(SwarmDocument("gw"))
    sync.document.counter_add("g/c", 1)
    assert not sync.synced
    assert sync.data_to_send() is None


def test_malformed_input_refused_document_untouched() -> None:
    gateway = SwarmDocument("gw")
    gateway.counter_add("g/c", 1)
    sync = StateSync(gateway)
    before = gateway.snapshot(), gateway.state_vector()
    with pytest.raises(MalformedUpdate) as info:
        sync.apply_update(b"\x05\xff\xff")
    assert info.value.error_code == 101
    for bad_vector in [b"", b"\x05", b"\x01\x80", b"\x01\x01\x01\x00"]:
        with pytest.raises(MalformedStateVector) as vector_info:
            sync.handle_sync_request(bad_vector)
        assert vector_info.value.error_code == 102
    assert (gateway.snapshot(), gateway.state_vector()) == before
    assert not sync.synced


def test_writer_reused_is_detected() -> None:
    gateway = SwarmDocument("gw")
    old = SwarmDocument("edge-0")
    for _ in range(5):
        old.counter_add("g/c", 1)
    Link(old, gateway).handshake()
    restarted = SwarmDocument("edge-0")  # same incarnation, state lost
    restarted.counter_add("g/c", 1)
    with pytest.raises(WriterReused) as info:
        StateSync(restarted).handle_sync_request(gateway.state_vector())
    assert info.value.error_code == 111
    # A restart that syncs before writing picks its history back up.
    recovered = SwarmDocument("edge-0")
    Link(recovered, gateway).handshake()
    recovered.counter_add("g/c", 1)
    link = Link(recovered, gateway)
    link.handshake()
    assert gateway.counter_value("g/c") == 6


@given(st.dictionaries(st.integers(0, 2**53 - 1), st.integers(0, 2**40), max_size=20))
def test_state_vector_roundtrip(vector: dict[int, int]) -> None:
    assert decode_state_vector(encode_state_vector(vector)) == vector


def test_state_vector_matches_pycrdt() -> None:
    doc = SwarmDocument("edge-0")
    for index in range(300):
        doc.set_add("g/s", str(index))
    vector = decode_state_vector(doc.state_vector())
    assert vector == {doc.client_id: vector[doc.client_id]}
    assert vector[doc.client_id] >= 300
    assert doc.encode_update(encode_state_vector(vector)) == doc.encode_update(doc.state_vector())


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rounds=st.integers(1, 6),
    drop=st.floats(0.0, 0.6),
)
def test_gateways_replicate_and_converge(seed: int, rounds: int, drop: float) -> None:
    """Edges on two gateways; updates get lost; reconnect handshakes repair everything."""
    rng = random.Random(seed)
    gateways = [SwarmDocument("gw-a"), SwarmDocument("gw-b")]
    edges = [SwarmDocument(f"edge-{index}") for index in range(6)]
    homes = [gateways[index % 2] for index in range(len(edges))]
    links = [Link(edge, home) for edge, home in zip(edges, homes, strict=True)]
    links.append(Link(gateways[0], gateways[1]))
    for link in links:
        link.handshake()
    total = 0
    for _ in range(rounds):
        for doc in [*edges, *gateways]:
            delta = rng.randint(-3, 5)
            if delta:
                doc.counter_add("g/c", delta)
                total += delta
            doc.set_add("g/s", f"item-{rng.randint(0, 9)}")
            if rng.random() < 0.3:
                doc.set_remove("g/s", f"item-{rng.randint(0, 9)}")
            doc.flag_set("g/f", rng.random() < 0.5)
        for link in links:
            for src, dst in ((link.left, link.right), (link.right, link.left)):
                update = src.data_to_send()
                if update is not None and rng.random() >= drop:
                    dst.apply_update(update)
                    if rng.random() < 0.2:
                        dst.apply_update(update)  # duplicated
    # Heal: every connection is re-established (lost updates are recovered by state vector).
    links = [Link(link.left.document, link.right.document) for link in links]
    for link in links:
        link.handshake()
    settle(links)
    everyone = [*gateways, *edges]
    reference = everyone[0].snapshot()
    assert all(doc.snapshot() == reference for doc in everyone)
    assert reference["counters"].get("g/c", 0) == total


def test_partition_bench_converges_quickly() -> None:
    assert converge_after_partition(edges_per_side=5, ops_per_edge=32) < 1.0
