"""Several gateways, sans-I/O: the ring view of one gateway (``GatewayRing``), what the
gateway does when it changes (``RingService``) and the edge's choice of gateway across
failures and REDIRECTs (``GatewayChoice``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from edgeswarm.client.address import GatewayAddress
from edgeswarm.edge.gateway_choice import MAX_REDIRECTS, GatewayChoice
from edgeswarm.gateway.gateway_ring import RingService
from edgeswarm.placement import Membership
from edgeswarm.placement.gateways import GatewayRing, RingPeer, owner_gateways
from edgeswarm.wire import Redirect

EDGES = [f"edge-{i}" for i in range(600)]
B = RingPeer("gw-b", "10.0.0.2", 4433)
C = RingPeer("gw-c", "10.0.0.3", 4433)


def ring_of(self_id: str, *peers: RingPeer) -> GatewayRing:
    ring = GatewayRing(self_id)
    for peer in peers:
        ring.peer_up(peer)
    return ring


def owner_id(ring: GatewayRing, edge: str) -> str:
    owner = ring.owner(edge)
    return ring.gateway_id if owner is None else owner.gateway_id


def test_alone_a_gateway_owns_every_edge() -> None:
    ring = GatewayRing("gw-a")
    assert ring.members == ("gw-a",)
    assert all(ring.owner(edge) is None for edge in EDGES)


def test_every_gateway_decides_the_same_owner_from_the_same_membership() -> None:
    a = ring_of("gw-a", B, C)
    b = ring_of("gw-b", RingPeer("gw-a", "10.0.0.1", 4433), C)
    fleet = Membership().joined("gw-a").joined("gw-b").joined("gw-c")
    expected = owner_gateways(EDGES, fleet)
    assert {edge: owner_id(a, edge) for edge in EDGES} == expected
    assert {edge: owner_id(b, edge) for edge in EDGES} == expected
    assert {owner_id(a, edge) for edge in EDGES} == {"gw-a", "gw-b", "gw-c"}


def test_an_owner_is_named_with_the_address_its_peer_link_uses() -> None:
    ring = ring_of("gw-a", B)
    owners = {ring.owner(edge) for edge in EDGES}
    assert owners == {None, B}


def test_many_edges_are_placed_at_once_as_one_by_one() -> None:
    alone = GatewayRing("gw-a")
    assert alone.owners(EDGES) == [None] * len(EDGES)
    ring = ring_of("gw-a", B, C)
    assert ring.owners([]) == []
    fleet = Membership().joined("gw-a").joined("gw-b").joined("gw-c")
    owners = ring.owners(EDGES)
    placed = {
        edge: "gw-a" if o is None else o.gateway_id for edge, o in zip(EDGES, owners, strict=True)
    }
    assert placed == owner_gateways(EDGES, fleet)
    assert set(owners) == {None, B, C}


@settings(max_examples=30, deadline=None)
@given(down=st.sampled_from([B, C]))
def test_a_peer_going_down_moves_only_its_edges_and_they_come_back(down: RingPeer) -> None:
    ring = ring_of("gw-a", B, C)
    before = {edge: owner_id(ring, edge) for edge in EDGES}
    assert ring.peer_down(down.gateway_id)
    during = {edge: owner_id(ring, edge) for edge in EDGES}
    assert ring.peer_up(down)
    after = {edge: owner_id(ring, edge) for edge in EDGES}
    moved = {edge for edge in EDGES if before[edge] != during[edge]}
    assert moved == {edge for edge in EDGES if before[edge] == down.gateway_id}
    assert down.gateway_id not in during.values()
    assert after == before


def test_changes_are_reported_once_and_this_gateway_is_never_its_own_peer() -> None:
    ring = GatewayRing("gw-a")
    assert ring.peer_up(B)
    assert not ring.peer_up(B)  # already up at that address
    assert ring.peer_up(RingPeer("gw-b", "10.0.0.9", 4433))  # moved: a change
    assert not ring.peer_up(RingPeer("gw-a", "127.0.0.1", 1))  # a --peer naming itself
    assert ring.members == ("gw-a", "gw-b")
    assert ring.peer_down("gw-b")
    assert not ring.peer_down("gw-b")
    assert not ring.peer_down("gw-zz")


def address(host: str, port: int = 4433) -> GatewayAddress:
    return GatewayAddress(host=host, port=port, ca_file=Path("ca.crt"), server_name="gw.example")


def to(host: str, port: int = 5000) -> Redirect:
    return Redirect(gateway_id="gw-x", host=host, port=port, reason="owner")


def test_an_edge_goes_round_its_list_when_gateways_fail() -> None:
    choice = GatewayChoice([address("a"), address("b"), address("c")])
    assert choice.current.host == "a"
    assert [choice.failed().host for _ in range(4)] == ["b", "c", "a", "b"]


def test_a_redirect_keeps_the_ca_and_stack_but_checks_the_new_hosts_name() -> None:
    choice = GatewayChoice([address("a")])
    assert choice.redirected(to("10.0.0.7", 6000))
    assert (choice.current.host, choice.current.port) == ("10.0.0.7", 6000)
    assert choice.current.ca_file == Path("ca.crt")
    assert choice.current.server_name is None  # verified against the host it names


def test_when_the_gateway_it_was_sent_to_fails_the_edge_goes_back_to_its_list() -> None:
    choice = GatewayChoice([address("a"), address("b")])
    choice.failed()  # now b
    choice.redirected(to("owner"))
    choice.connected()
    assert choice.current.host == "owner"
    assert choice.failed().host == "b"  # where it was, not a step further


def test_redirects_in_a_row_are_bounded_and_a_session_resets_the_count() -> None:
    choice = GatewayChoice([address("a"), address("b")])
    assert all(choice.redirected(to(f"h{i}")) for i in range(MAX_REDIRECTS))
    assert not choice.redirected(to("one-too-many"))  # views disagree: back off instead
    assert choice.current.host == "b"
    for i in range(MAX_REDIRECTS):
        choice.redirected(to(f"h{i}"))
        choice.connected()
    assert choice.redirected(to("fine"))


def test_an_edge_needs_a_gateway() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GatewayChoice([])


class Link:
    """A peer link as the ring service reads it."""

    def __init__(self, remote_id: str, host: str, port: int) -> None:
        self.remote_id: str | None = remote_id
        self.peer_address = (host, port)
        self.connected = True


class LiveEdge:
    def __init__(self, takes: bool = True) -> None:
        self.takes = takes
        self.sent: list[Redirect] = []

    def redirect(self, redirect: Redirect) -> bool:
        if self.takes:
            self.sent.append(redirect)
        return self.takes


def service(edges: dict[str, LiveEdge], *, enabled: bool) -> tuple[RingService, CollectorRegistry]:
    registry = CollectorRegistry()
    ring = RingService(
        "gw-a", lambda: edges.items(), registry=registry, placer="ring", enabled=enabled
    )
    return ring, registry


def test_when_a_peer_comes_up_the_live_edges_it_owns_are_redirected_to_it() -> None:
    edges = {edge: LiveEdge(takes=edge != "edge-0") for edge in EDGES[:60]}
    ring, registry = service(edges, enabled=True)
    assert ring.redirect_for("edge-1", "owner") is None  # alone: everything is ours
    ring.link_changed(Link("gw-b", "10.0.0.2", 4433))
    owned_by_b = {e for e in edges if ring.redirect_for(e, "owner") is not None}
    assert 10 < len(owned_by_b) < 50
    for edge_id, edge in edges.items():
        expected = [Redirect("gw-b", "10.0.0.2", 4433, "ring")] if edge.takes else []
        assert edge.sent == (expected if edge_id in owned_by_b else [])
    assert registry.get_sample_value("edgeswarm_gateway_ring_gateways") == 2
    link = Link("gw-b", "10.0.0.2", 4433)
    link.connected = False
    ring.link_changed(link)  # down: the ring is ours alone again, nobody is sent anywhere
    assert registry.get_sample_value("edgeswarm_gateway_ring_gateways") == 1
    assert all(ring.redirect_for(e, "owner") is None for e in edges)


def test_without_shard_edges_the_ring_is_kept_but_nobody_is_redirected() -> None:
    edges = {edge: LiveEdge() for edge in EDGES[:60]}
    ring, registry = service(edges, enabled=False)
    ring.link_changed(Link("gw-b", "10.0.0.2", 4433))
    assert registry.get_sample_value("edgeswarm_gateway_ring_gateways") == 2
    assert all(not edge.sent for edge in edges.values())
    assert all(ring.redirect_for(e, "owner") is None for e in edges)


def test_a_redirect_sent_is_counted_by_reason() -> None:
    ring, registry = service({}, enabled=True)
    ring.redirected(Redirect("gw-b", "h", 1, "owner"))
    ring.redirected(Redirect("gw-b", "h", 1, "ring"))
    ring.redirected(Redirect("gw-b", "h", 1, "ring"))
    counted = "edgeswarm_gateway_redirects_total"
    assert registry.get_sample_value(counted, {"reason": "owner"}) == 1
    assert registry.get_sample_value(counted, {"reason": "ring"}) == 2
