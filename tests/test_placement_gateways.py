"""Edges over gateways (edgeswarm.placement.gateways): the ring keyed by edge name."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeswarm.placement import Membership, MemberState
from edgeswarm.placement.gateways import owner_gateways

EDGES = [f"edge-{i}" for i in range(2000)]


def gateways(*names: str) -> Membership:
    membership = Membership()
    for name in names:
        membership = membership.joined(name)
    return membership


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(count=st.integers(2, 6), data=st.data())
def test_a_dead_gateways_edges_move_to_the_others_and_come_back(
    count: int, data: st.DataObject
) -> None:
    names = [f"gw-{i}" for i in range(count)]
    fleet = gateways(*names)
    dead = data.draw(st.sampled_from(names))
    before = owner_gateways(EDGES, fleet)
    during = owner_gateways(EDGES, fleet.with_state(dead, MemberState.DOWN))
    after = owner_gateways(
        EDGES, fleet.with_state(dead, MemberState.DOWN).with_state(dead, MemberState.ACTIVE)
    )
    moved = {e for e in EDGES if before[e] != during[e]}
    assert moved == {e for e in EDGES if before[e] == dead}  # only the dead one's edges move
    assert all(during[e] != dead for e in EDGES)
    assert after == before  # and exactly those come back


def test_every_gateway_gets_its_share_and_none_means_no_gateway() -> None:
    owners = owner_gateways(EDGES, gateways("gw-a", "gw-b", "gw-c"))
    shares = [list(owners.values()).count(g) for g in ("gw-a", "gw-b", "gw-c")]
    assert min(shares) > 0.8 * len(EDGES) / 3
    assert owner_gateways(["edge-1"], Membership()) == {"edge-1": None}
