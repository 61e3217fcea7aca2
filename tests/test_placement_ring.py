"""Property tests of the placers (edgeswarm.placement.ring): minimal movement,
capacity weights, balance, determinism, over many sizes."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from edgeswarm.placement import (
    DEFAULT_PLACER,
    HashRing,
    MaglevTable,
    NoEligibleNodeError,
    Placer,
    RendezvousHash,
    build_placer,
)
from edgeswarm.placement.hashing import hash_ids

EXACT = [HashRing, RendezvousHash]
"""Placers whose join/leave moves only what it must, by construction."""

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

node_names = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12),
    min_size=1,
    max_size=40,
    unique=True,
)
agent_ids = st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=3000, unique=True).map(
    lambda ids: np.array(ids, dtype=np.uint32)
)


def owners(placer: Placer, ids: NDArray[np.uint32]) -> NDArray[np.str_]:
    names: NDArray[np.str_] = np.array(placer.nodes, dtype=np.str_)
    return names[placer.lookup(ids)]


@pytest.mark.parametrize("kind", EXACT)
@SETTINGS
@given(names=node_names, ids=agent_ids, data=st.data())
def test_a_join_moves_agents_only_to_the_new_node(kind, names, ids, data):
    joiner = data.draw(st.text("XYZ", min_size=1, max_size=6).filter(lambda n: n not in names))
    before = owners(kind(dict.fromkeys(names, 1.0)), ids)
    after = owners(kind(dict.fromkeys([*names, joiner], 1.0)), ids)
    moved = before != after
    assert set(after[moved].tolist()) <= {joiner}


@pytest.mark.parametrize("kind", EXACT)
@SETTINGS
@given(names=node_names.filter(lambda n: len(n) >= 2), ids=agent_ids, data=st.data())
def test_a_leave_moves_only_the_leavers_agents(kind, names, ids, data):
    leaver = data.draw(st.sampled_from(names))
    before = owners(kind(dict.fromkeys(names, 1.0)), ids)
    after = owners(kind({n: 1.0 for n in names if n != leaver}), ids)
    moved = before != after
    assert set(before[moved].tolist()) <= {leaver}
    assert leaver not in set(after.tolist())


@pytest.mark.parametrize("kind", [HashRing, RendezvousHash, MaglevTable])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=2, max_size=12))
def test_capacity_weights_are_respected(kind, weights):
    members = {f"edge-{i}": w for i, w in enumerate(weights)}
    ids = np.arange(300_000, dtype=np.uint32)
    placer = kind(members)
    counts = np.bincount(placer.lookup(ids), minlength=len(members))
    expected = np.array([members[n] for n in placer.nodes]) / sum(weights) * ids.size
    assert np.all(np.abs(counts / expected - 1) < 0.15), (counts, expected)


@pytest.mark.parametrize("kind", [HashRing, RendezvousHash, MaglevTable])
@pytest.mark.parametrize("nodes", [1, 3, 10, 50])
def test_balance_at_the_default_settings(kind, nodes):
    ids = np.arange(1_000_000, dtype=np.uint32)
    counts = np.bincount(kind({f"edge-{i}": 1 for i in range(nodes)}).lookup(ids))
    assert counts.max() / counts.mean() <= 1.1


@pytest.mark.parametrize("kind", EXACT)
@SETTINGS
@given(names=node_names, ids=agent_ids)
def test_lookup_is_a_function_of_membership_and_id_only(kind, names, ids):
    forward = kind(dict.fromkeys(names, 1.0))
    backward = kind(dict.fromkeys(reversed(names), 1.0))
    assert forward.nodes == tuple(sorted(names))
    whole = forward.lookup(ids)
    assert np.array_equal(whole, backward.lookup(ids))
    half = ids.size // 2
    assert np.array_equal(whole[half:], forward.lookup(ids[half:]))
    assert whole.shape == ids.shape
    assert (whole >= 0).all()
    assert (whole < len(names)).all()


def test_maglev_lookup_is_a_function_of_membership_and_id_only():
    ids = np.arange(50_000, dtype=np.uint32)
    names = [f"gw-{i}" for i in range(7)]
    forward = MaglevTable(dict.fromkeys(names, 1.0))
    assert np.array_equal(
        forward.lookup(ids), MaglevTable(dict.fromkeys(names[::-1], 1.0)).lookup(ids)
    )
    assert np.array_equal(forward.lookup(ids)[100:], forward.lookup(ids[100:]))


def test_ring_join_moves_about_the_ideal_share():
    ids = np.arange(500_000, dtype=np.uint32)
    for n in (4, 10, 30):
        before = owners(HashRing({f"e{i}": 1 for i in range(n)}), ids)
        after = owners(HashRing({f"e{i}": 1 for i in range(n + 1)}), ids)
        assert 0.9 <= np.mean(before != after) * (n + 1) <= 1.1


def test_no_member_with_weight_is_a_typed_error():
    with pytest.raises(NoEligibleNodeError):
        HashRing({})
    with pytest.raises(NoEligibleNodeError):
        build_placer(DEFAULT_PLACER, {"edge-a": 0.0})
    with pytest.raises(ValueError, match="unknown placer"):
        build_placer("modulo", {"edge-a": 1.0})


def test_id_hash_is_a_bijection_on_a_block_and_salt_changes_it():
    ids = np.arange(100_000, dtype=np.uint32)
    assert np.unique(hash_ids(ids)).size == ids.size
    assert not np.array_equal(hash_ids(ids), hash_ids(ids, salt=7))
