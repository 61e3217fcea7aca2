"""A peer writes only what it owns in the swarm state: updates are checked by their
effect on a shadow of the document before they are merged (state/ownership.py), and a
real gateway refuses them too (``test_state_forgery.py``)."""

from __future__ import annotations

import pytest

from edgeswarm.state import (
    ForeignStateEntry,
    ReadOnlyState,
    SwarmDocument,
    WriteGuard,
    schema,
)

from .crafted_updates import COUNTER, entry, forged_update, writer


@pytest.fixture
def gateway_doc() -> tuple[SwarmDocument, WriteGuard, SwarmDocument]:
    """The gateway's document holding edge-a's count of 5, its guard, and edge-a's doc."""
    gateway = SwarmDocument("gw", incarnation=1)
    guard = WriteGuard(gateway)
    edge_a = SwarmDocument("edge-a", incarnation=1)
    edge_a.counter_add(COUNTER, 5)
    update = edge_a.encode_update()
    guard.check(update, writers=frozenset({writer("edge-a")}), may_write=True)
    gateway.apply_update(update)
    return gateway, guard, edge_a


def test_a_writer_may_change_its_own_entries(gateway_doc) -> None:
    gateway, guard, edge_a = gateway_doc
    before = edge_a.state_vector()
    edge_a.counter_add(COUNTER, 2)
    edge_a.set_add("swarm/seen", "x")
    edge_a.flag_set("swarm/alarm", True)
    update = edge_a.encode_update(before)
    guard.check(update, writers=frozenset({writer("edge-a")}), may_write=True)
    gateway.apply_update(update)
    assert gateway.counter_value(COUNTER) == 7


def test_overwriting_another_writers_counter_entry_is_refused(gateway_doc) -> None:
    """The finding: an edge set edge-a's entry of swarm/anomalies from 5 to 1 000 000."""
    gateway, guard, _ = gateway_doc
    b = writer("edge-b")
    root = schema.counter_root(COUNTER)
    attacks = {
        "own client, foreign entry": forged_update(
            gateway.encode_update(), as_client=b, root=root, key=entry(writer("edge-a")),
            value=1_000_000,
        ),
        "foreign client, foreign entry": forged_update(
            gateway.encode_update(), as_client=writer("edge-a"), root=root,
            key=entry(writer("edge-a")), value=1_000_000,
        ),
        "deleting a foreign entry": forged_update(
            gateway.encode_update(), as_client=b, root=root, key=entry(writer("edge-a")),
            value=None,
        ),
        "a root that is not ours": forged_update(
            gateway.encode_update(), as_client=b, root="elsewhere", key=entry(b), value=1
        ),
        "a negative own entry": forged_update(
            gateway.encode_update(), as_client=b, root=root, key=entry(b), value=-5
        ),
    }  # fmt: skip
    for name, update in attacks.items():
        with pytest.raises(ForeignStateEntry):
            guard.check(update, writers=frozenset({b}), may_write=True)
        assert gateway.counter_value(COUNTER) == 5, name
    # the guard still takes the edge's own writes afterwards
    own = forged_update(gateway.encode_update(), as_client=b, root=root, key=entry(b), value=3)
    guard.check(own, writers=frozenset({b}), may_write=True)
    gateway.apply_update(own)
    assert gateway.counter_value(COUNTER) == 8


def test_an_update_that_would_land_later_is_refused(gateway_doc) -> None:
    """Items whose dependencies the gateway lacks stay pending and would integrate later,
    unchecked: refused now."""
    _, guard, edge_a = gateway_doc
    mid = edge_a.state_vector()
    edge_a.counter_add(COUNTER, 1)
    after_mid = edge_a.state_vector()
    edge_a.counter_add(COUNTER, 1)
    gap = edge_a.encode_update(after_mid)  # the second write only
    del mid
    with pytest.raises(ForeignStateEntry, match="lacks"):
        guard.check(gap, writers=frozenset({writer("edge-a")}), may_write=True)


def test_read_only_roles_may_echo_but_not_write(gateway_doc) -> None:
    gateway, guard, _ = gateway_doc
    guard.check(gateway.encode_update(), writers=frozenset(), may_write=False)  # an echo
    admin = forged_update(
        gateway.encode_update(),
        as_client=writer("admin"),
        root=schema.FLAGS_ROOT,
        key="swarm/alarm",
        value=True,
    )
    with pytest.raises(ReadOnlyState):
        guard.check(admin, writers=frozenset(), may_write=False)


def test_a_peer_gateway_replicates_everything(gateway_doc) -> None:
    gateway, guard, _ = gateway_doc
    relayed = forged_update(
        gateway.encode_update(),
        as_client=writer("edge-c"),
        root=schema.counter_root(COUNTER),
        key=entry(writer("edge-c")),
        value=4,
    )
    guard.check(relayed, writers=None, may_write=True)
