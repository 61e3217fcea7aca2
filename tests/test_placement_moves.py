"""Membership epochs, assignments (pins, drains, downs) and move plans, without I/O."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeswarm.placement import (
    UNOWNED,
    Assignment,
    Membership,
    MemberState,
    MoveKind,
    MovePlan,
    UnknownNodeError,
    assign,
    plan_moves,
)

IDS = np.arange(20_000, dtype=np.uint32)


def fleet(*names: str) -> Membership:
    membership = Membership()
    for name in names:
        membership = membership.joined(name)
    return membership


def apply(plan: MovePlan, owners_by_id: dict[int, str | None]) -> dict[int, str | None]:
    """Owner per agent after every batch of the plan has been carried out."""
    result = dict(owners_by_id)
    for batch in plan.batches:
        for agent in batch.ids.tolist():
            assert result.get(agent) == batch.source, (
                "a batch moved an agent its source did not own"
            )
            result[agent] = batch.target
    return result


def by_id(assignment: Assignment) -> dict[int, str | None]:
    names = assignment.owner_names()
    return {int(a): (str(n) or None) for a, n in zip(assignment.ids, names, strict=True)}


def test_every_membership_change_increments_the_epoch_and_no_op_does_not():
    m0 = Membership()
    m1 = m0.joined("edge-a")
    m2 = m1.joined("edge-b", weight=2)
    m3 = m2.with_state("edge-a", MemberState.DRAINING)
    m4 = m3.with_state("edge-a", MemberState.ACTIVE)
    m5 = m4.with_state("edge-b", MemberState.DOWN)
    m6 = m5.left("edge-b")
    assert [m.epoch for m in (m0, m1, m2, m3, m4, m5, m6)] == [0, 1, 2, 3, 4, 5, 6]
    assert m2.joined("edge-b", weight=2) is m2
    assert m3.with_state("edge-a", MemberState.DRAINING) is m3
    with pytest.raises(UnknownNodeError, match="edge-z"):
        m2.with_state("edge-z", MemberState.DRAINING)


def test_a_drained_edge_keeps_only_its_pinned_agents():
    membership = fleet("edge-a", "edge-b", "edge-c").with_state("edge-b", MemberState.DRAINING)
    pins = {5: "edge-b", 6: "edge-a"}
    assignment = assign(IDS, membership, pins=pins)
    assert assignment.ids_of("edge-b").tolist() == [5]
    assert assignment.owner_of(6) == "edge-a"
    assert assignment.epoch == membership.epoch
    assert sum(assignment.counts().values()) == IDS.size


def test_pinned_agents_on_a_down_edge_are_unowned_until_it_returns():
    membership = fleet("edge-a", "edge-b")
    down = membership.with_state("edge-b", MemberState.DOWN)
    assignment = assign(IDS, down, pins={7: "edge-b"})
    assert assignment.owner_of(7) is None
    assert (assignment.owners == UNOWNED).sum() == 1
    back = assign(IDS, down.with_state("edge-b", MemberState.ACTIVE), pins={7: "edge-b"})
    plan = plan_moves(assignment, back, down.with_state("edge-b", MemberState.ACTIVE))
    place = [b for b in plan.batches if b.kind is MoveKind.PLACE]
    assert [b.ids.tolist() for b in place] == [[7]]


def test_drain_plan_hands_over_only_the_drained_edges_agents_in_bounded_batches():
    membership = fleet("edge-a", "edge-b", "edge-c")
    old = assign(IDS, membership)
    drained = membership.with_state("edge-b", MemberState.DRAINING)
    new = assign(IDS, drained)
    plan = plan_moves(old, new, drained, batch_size=500)
    assert plan.agents == old.ids_of("edge-b").size
    assert all(b.kind is MoveKind.HANDOVER and b.source == "edge-b" for b in plan.batches)
    assert all(0 < b.ids.size <= 500 for b in plan.batches)
    assert (plan.from_epoch, plan.to_epoch) == (old.epoch, new.epoch)
    assert apply(plan, by_id(old)) == by_id(new)


def test_a_down_edge_is_restored_from_checkpoints_first():
    membership = fleet("edge-a", "edge-b", "edge-c")
    old = assign(IDS, membership)
    failed = membership.with_state("edge-c", MemberState.DOWN).joined("edge-d")
    new = assign(IDS, failed)
    plan = plan_moves(old, new, failed)
    kinds = [b.kind for b in plan.batches]
    assert kinds == sorted(
        kinds, key=[MoveKind.RESTORE, MoveKind.PLACE, MoveKind.HANDOVER, MoveKind.PARK].index
    )
    restored = np.concatenate([b.ids for b in plan.batches if b.kind is MoveKind.RESTORE])
    assert np.array_equal(np.sort(restored), old.ids_of("edge-c"))
    assert apply(plan, by_id(old)) == by_id(new)


def test_no_active_member_parks_every_agent():
    membership = fleet("edge-a")
    old = assign(IDS[:100], membership)
    drained = membership.with_state("edge-a", MemberState.DRAINING)
    new = assign(IDS[:100], drained)
    plan = plan_moves(old, new, drained)
    assert {b.kind for b in plan.batches} == {MoveKind.PARK}
    assert plan.agents == 100


changes = st.lists(
    st.tuples(
        st.sampled_from(["join", "drain", "undrain", "down", "up"]),
        st.sampled_from([f"edge-{c}" for c in "abcdef"]),
    ),
    min_size=1,
    max_size=12,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=changes,
    pins=st.dictionaries(st.integers(0, 1999), st.sampled_from(["edge-a", "edge-b"]), max_size=20),
)
def test_any_sequence_of_changes_plans_moves_that_reach_the_new_assignment(steps, pins):
    ids = IDS[:2000]
    membership = fleet("edge-a", "edge-b")
    current = assign(ids, membership, pins=pins)
    for action, name in steps:
        state = {
            "drain": MemberState.DRAINING,
            "undrain": MemberState.ACTIVE,
            "down": MemberState.DOWN,
            "up": MemberState.ACTIVE,
        }
        if action == "join":
            changed = membership.joined(name)
        elif name not in membership.members:
            continue
        else:
            changed = membership.with_state(name, state[action])
        new = assign(ids, changed, pins=pins)
        plan = plan_moves(current, new, changed, batch_size=300)
        assert apply(plan, by_id(current)) == by_id(new)
        for batch in plan.batches:
            assert batch.ids.size <= 300
            if batch.target is not None:
                assert changed.members[batch.target].state is not MemberState.DOWN
        pinned_moves = {a for b in plan.batches for a in b.ids.tolist()} & set(pins)
        for agent in pinned_moves:
            assert pins[agent] in (by_id(current)[agent], by_id(new)[agent])
        membership, current = changed, new


def test_assignment_does_not_depend_on_the_order_of_ids() -> None:
    membership = fleet("edge-a", "edge-b", "edge-c")
    shuffled = np.random.default_rng(7).permutation(IDS)
    repeated = np.concatenate([shuffled, shuffled[:100]])
    in_order = assign(IDS, membership)
    for ids in (shuffled, repeated):
        other = assign(ids, membership)
        assert np.array_equal(other.ids, in_order.ids)
        assert np.array_equal(other.owners, in_order.owners)
