"""The placement lease (``placement/lease.py``) and the gateway's side of it, sans sockets.

An edge steps its placed agents only while it holds the lease the gateway granted:
time counted from when it *sent* the newest answered request, ticks counted from its
last fully acknowledged tick, and only once the session's assignment arrived. The
gateway resumes the agents of an edge whose session ended ``lease_ticks`` past the
highest tick it logged for them, so the ticks a cut-off edge stepped (and delivers
after the heal) are never stepped again elsewhere.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeswarm.gateway.config import GatewayConfig
from edgeswarm.gateway.handshake import welcome_for
from edgeswarm.gateway.placement_edges import PlacementEdges
from edgeswarm.identity import KeyPair
from edgeswarm.placement.lease import (
    LEASE_MARGIN_S,
    Lease,
    LeaseError,
    LeaseTerms,
    Standing,
    lease_for,
)
from edgeswarm.wire import FEATURE_PLACEMENT, Hello, Role

from .conftest import edgeswarm_command
from .test_placement_edges_handover import AGENTS, Edge, rows
from .test_placement_service import Fleet

TERMS = LeaseTerms(seconds=2.0, ticks=10)


def held_lease(sent_at: float = 0.0) -> Lease:
    lease = Lease()
    lease.session_started(TERMS, sent_at)
    lease.assignment_received()
    return lease


def test_the_lease_defaults_to_half_the_edge_timeout_and_must_end_before_it() -> None:
    assert lease_for(30.0, None, 50) == LeaseTerms(seconds=15.0, ticks=50)
    assert lease_for(2.0, 1.75, 5).seconds == 1.75  # exactly the margin short of it
    with pytest.raises(LeaseError, match="at most --edge-timeout"):
        lease_for(2.0, 2.0 - LEASE_MARGIN_S / 2, 5)
    with pytest.raises(LeaseError, match="at most --edge-timeout"):
        lease_for(0.4, None, 5)  # half of it is within the margin of it
    with pytest.raises(LeaseError, match="--lease-ticks"):
        lease_for(30.0, None, 0)


def test_the_lease_runs_from_when_the_answered_request_was_sent() -> None:
    lease = held_lease(sent_at=0.0)
    lease.renewed(sent_at=10.0)  # answered at, say, 11.5: that does not count
    assert lease.standing(0, 11.99) is Standing.HELD
    assert lease.standing(0, 12.0) is Standing.EXPIRED
    lease.renewed(sent_at=9.0)  # an older request answered late extends nothing
    assert lease.standing(0, 12.0) is Standing.EXPIRED
    assert lease.expiries == 1
    lease.renewed(sent_at=11.0)  # answered in the same session: the gateway kept it
    assert lease.standing(0, 12.5) is Standing.HELD
    assert lease.standing(0, 13.0) is Standing.EXPIRED
    assert lease.standing(0, 14.0) is Standing.EXPIRED
    assert lease.expiries == 2  # once per expiry, not per tick


def test_a_new_session_steps_nothing_before_its_assignment() -> None:
    lease = held_lease()
    lease.session_started(TERMS, 5.0)  # reconnected: what it holds may have moved away
    assert lease.standing(0, 5.5) is Standing.UNASSIGNED
    lease.assignment_received()
    assert lease.standing(0, 5.5) is Standing.HELD


def test_a_gateway_without_leases_leaves_the_edge_as_before() -> None:
    lease = Lease()
    lease.session_started(None, 0.0)
    assert lease.standing(0, 1e9) is Standing.UNASSIGNED
    lease.assignment_received()
    assert lease.standing(0, 1e9) is Standing.HELD


def test_the_edge_waits_once_lease_ticks_ahead_of_its_acks() -> None:
    lease = held_lease()
    for tick in range(10):
        assert lease.standing(tick, 0.1) is Standing.HELD
        lease.spooled(tick, last_seq=tick + 1)  # one batch per tick, seq = tick + 1
    assert lease.standing(10, 0.1) is Standing.AHEAD  # ticks 0..9 unacknowledged
    lease.acked(1)  # tick 0's batch
    assert lease.standing(10, 0.1) is Standing.HELD
    lease.spooled(10, 11)
    assert lease.standing(11, 0.1) is Standing.AHEAD
    lease.acked(11)
    assert lease.standing(11, 0.1) is Standing.HELD
    lease.spooled(11, 11)  # a tick that spooled nothing is acknowledged already
    assert lease.standing(30, 0.1) is Standing.HELD


@settings(max_examples=200, deadline=None)
@given(
    lag=st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=200),
    cut_at=st.integers(min_value=0, max_value=200),
    lease_ticks=st.integers(min_value=1, max_value=20),
)
def test_a_cut_off_edge_never_steps_past_the_logged_tick_plus_lease_ticks(
    lag: list[int], cut_at: int, lease_ticks: int
) -> None:
    """An edge ticking with acks ``lag[i]`` ticks late, cut off at tick ``cut_at``:
    whatever it steps afterwards stays within ``lease_ticks`` of what the gateway
    logged (the gateway's resume point for its agents)."""
    lease = Lease()
    lease.session_started(LeaseTerms(seconds=1e9, ticks=lease_ticks), 0.0)
    lease.assignment_received()
    logged, stepped, tick, pending = 0, 0, 0, list[tuple[int, int]]()
    for step in range(400):
        if step < cut_at:  # the gateway answers acks due by now, receives everything
            due = [(t, seq) for t, seq in pending if t + lag[step % len(lag)] <= tick]
            for t, seq in due:
                lease.acked(seq)
                pending.remove((t, seq))
            logged = tick  # every batch sent so far reached the log
        if lease.standing(tick, 0.0) is not Standing.HELD:
            continue
        tick += 1  # the agent steps its tick `tick`
        stepped = tick
        lease.spooled(tick - 1, tick)
        pending.append((tick - 1, tick))
    assert stepped <= logged + lease_ticks


def wired(fleet: Fleet, lease_ticks: int, lease_s: float = 0.0) -> PlacementEdges:
    edges = PlacementEdges(
        fleet.store,
        fleet.service.refresh,
        lease_ticks=lease_ticks,
        lease_s=lease_s,
        clock=lambda: fleet.now,
    )
    fleet.service.on_assignment = edges.assignment_changed
    return edges


@pytest.fixture
def fleet(open_fleet: Callable[[], Fleet]) -> Fleet:
    fleet = open_fleet()
    fleet.ask("agents.add", first_id=0, count=AGENTS, policy="boids")
    return fleet


def test_a_gone_edges_agents_resume_lease_ticks_past_their_last_logged_tick(
    fleet: Fleet,
) -> None:
    edges = wired(fleet, lease_ticks=7)
    fleet.connect("a", "b")
    a, b = Edge(edges, "a"), Edge(edges, "b")
    held_b = b.last_set().agent_ids
    edges.checkpoint("b", rows(held_b, 17, 5.0, b.last_set().epoch))
    edges.observed(held_b, 19)  # b delivered tick 19, then was cut off
    fleet.live.discard("b")
    edges.detach("b", b.frames.append)
    fleet.now += 10.0  # past --edge-timeout
    fleet.service.refresh()
    restored = a.last_set()
    came = np.isin(restored.agent_ids, held_b)
    assert came.sum() == held_b.size
    # b may have stepped up to 19 + 7 (spooled, delivered after the heal): resume past it
    assert (restored.ticks[came] == 19 + 7).all()
    assert (restored.state[came] == 5.0).all()  # from the checkpoint: the staleness bound
    kept = restored.ticks[~came]
    assert (kept == 0).all()  # a's own agents: no skip


def test_agents_handed_back_live_skip_nothing(fleet: Fleet) -> None:
    edges = wired(fleet, lease_ticks=7)
    fleet.connect("a", "b")
    a, b = Edge(edges, "a"), Edge(edges, "b")
    held_b = b.last_set().agent_ids
    fleet.ask("edges.drain", edge_id="b")
    assert edges.checkpoint("b", rows(held_b, 42, 3.0, b.last_set().epoch)) is None
    moved = a.last_set()
    came = np.isin(moved.agent_ids, held_b)
    assert (moved.ticks[came] == 42).all()  # b's exact row: it stopped at 42


def test_the_gateway_grants_the_lease_to_placement_edges_only() -> None:
    config = GatewayConfig(edge_timeout_s=2.0, lease_ticks=12)
    key = KeyPair.generate().public_key

    def welcome(role: Role, features: tuple[str, ...]) -> tuple[int, int]:
        hello = Hello(version=2, role=role, peer_id="p", public_key=key, features=features)
        got = welcome_for(hello, config, credit=1, resume_seq=0)
        return got.lease_ms, got.lease_ticks

    assert welcome(Role.EDGE, (FEATURE_PLACEMENT,)) == (1000, 12)  # half of 2 s
    assert welcome(Role.EDGE, ()) == (0, 0)  # not a placement edge: no lease, as before
    assert welcome(Role.ADMIN, (FEATURE_PLACEMENT,)) == (0, 0)


def test_a_lease_that_outlives_the_edge_timeout_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        edgeswarm_command(
            "gateway", "--data-dir", str(tmp_path / "gw"), "--edge-timeout", "2", "--lease", "2"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "--lease 2 must be" in lines[0]
    assert "--edge-timeout" in lines[0]
    assert not (tmp_path / "gw").exists()  # refused before anything was written


def test_a_vanished_edges_agents_go_nowhere_while_its_lease_may_run(fleet: Fleet) -> None:
    """Edge b's session ends and, before b is DOWN, edge c joins: the ring gives c some
    of b's agents, but b may still step them until its lease has run out."""
    edges = wired(fleet, lease_ticks=7, lease_s=1.0)
    fleet.connect("a", "b")
    a, b = Edge(edges, "a"), Edge(edges, "b")
    held_b = b.last_set().agent_ids
    edges.checkpoint("b", rows(held_b, 17, 5.0, b.last_set().epoch))
    fleet.live.discard("b")
    edges.detach("b", b.frames.append)  # gone, not DOWN yet
    fleet.connect("c")
    c = Edge(edges, "c")
    owned_c = fleet.service.refresh().ids_of("c")
    from_b = np.intersect1d(owned_c, held_b)
    assert from_b.size  # the ring moved some of b's agents to c
    assert not np.isin(from_b, c.last_set().agent_ids).any()  # withheld: b's lease runs
    fleet.now += 0.5
    edges.leases_ended()
    assert not np.isin(from_b, c.last_set().agent_ids).any()  # not yet
    fleet.now += 0.6  # past the lease
    edges.leases_ended()
    got = c.last_set()
    came = np.isin(got.agent_ids, from_b)
    assert came.sum() == from_b.size
    assert (got.ticks[came] == 17 + 7).all()  # b may have stepped them 7 past what it logged
    assert a.last_set().agent_ids.size  # a untouched


def test_an_edge_back_within_its_lease_gets_its_own_agents_at_once(fleet: Fleet) -> None:
    edges = wired(fleet, lease_ticks=7, lease_s=1.0)
    fleet.connect("a", "b")
    Edge(edges, "a")
    b = Edge(edges, "b")
    held_b = b.last_set().agent_ids
    edges.detach("b", b.frames.append)
    back = Edge(edges, "b")  # reconnected at once: the same edge, nothing withheld from it
    assert np.array_equal(back.last_set().agent_ids, held_b)
