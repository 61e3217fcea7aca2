"""The gateway's placement service over a real placement.db, without sockets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.gateway.agent_store import AgentStore
from edgeswarm.gateway.placement_service import PLACEMENT_OPS, PlacementService
from edgeswarm.wire import PlacementReply, PlacementRequest, decode_payload, encode_payload


class Fleet:
    def __init__(self, path: Path) -> None:
        self.live: set[str] = set()
        self.now = 0.0
        self.store = AgentStore(path)
        self.service = PlacementService(
            self.store, lambda: frozenset(self.live), edge_timeout_s=5.0, clock=lambda: self.now
        )

    def connect(self, *edges: str) -> None:
        for edge in edges:
            self.live.add(edge)
            self.service.edge_connected(edge)

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        reply = self.service.answer(PlacementRequest(request_id=1, op=op, args=args))
        assert reply.ok, reply.message
        return reply.result

    def close(self) -> None:
        self.store.close()

    def refused(self, op: str, **args: Any) -> str:
        reply = self.service.answer(PlacementRequest(request_id=1, op=op, args=args))
        assert not reply.ok
        assert reply.result == {}
        return reply.message


def per_edge(shards: dict[str, Any]) -> dict[str, int]:
    """``shards``' agents per edge as a map (the wire carries a list: any number of edges)."""
    return {e["edge_id"]: e["agents"] for e in shards["per_edge"]}


@pytest.fixture
def fleet(open_fleet: Callable[[], Fleet]) -> Fleet:
    return open_fleet()


def test_a_short_disconnect_moves_nothing_and_a_long_one_makes_the_edge_down(fleet: Fleet) -> None:
    fleet.ask("agents.add", first_id=0, count=1000, policy="p")
    fleet.connect("edge-a", "edge-b")
    before = fleet.ask("edges.list")
    fleet.live.discard("edge-b")
    fleet.service.refresh()  # the gateway refreshes when a connection closes
    fleet.now += 4.9
    assert fleet.ask("edges.list") == before  # within --edge-timeout: same epoch, same owners
    fleet.now += 0.2
    after = fleet.ask("edges.list")
    assert after["epoch"] == before["epoch"] + 1
    states = {e["edge_id"]: (e["state"], e["agents"]) for e in after["edges"]}
    assert states == {"edge-a": ("active", 1000), "edge-b": ("down", 0)}
    fleet.connect("edge-b")
    back = {e["edge_id"]: e["state"] for e in fleet.ask("edges.list")["edges"]}
    assert back == {"edge-a": "active", "edge-b": "active"}


def test_bad_requests_are_refused_in_one_line_and_change_nothing(fleet: Fleet) -> None:
    fleet.ask("agents.add", first_id=0, count=10, policy="p")
    epoch = fleet.ask("shards")["epoch"]
    assert "unknown op" in fleet.refused("agents.remove_all")
    assert "count" in fleet.refused("agents.add", first_id=0, count=-1, policy="p")
    assert "exist already" in fleet.refused("agents.add", first_id=5, count=10, policy="p")
    assert "labels" in fleet.refused("agents.add", first_id=50, count=1, policy="p", labels=[1])
    many = {f"k{i}": "v" for i in range(65)}
    assert "64 labels" in fleet.refused("agents.add", first_id=50, count=1, policy="p", labels=many)
    assert "never connected" in fleet.refused("edges.drain", edge_id="edge-q")
    assert "no agent 99" in fleet.refused("agents.show", agent_id=99)
    for message in (
        fleet.refused("agents.show", agent_id="7"),
        fleet.refused("agents.list", limit=-2),
    ):
        assert "\n" not in message
    assert fleet.store.agent_count() == 10
    assert fleet.ask("shards")["epoch"] == epoch
    assert {"agents.add", "edges.drain", "shards"} <= PLACEMENT_OPS


def test_drain_moves_only_the_drained_edges_unpinned_agents(fleet: Fleet) -> None:
    fleet.ask("agents.add", first_id=0, count=3000, policy="p")
    fleet.ask("agents.add", first_id=9000, count=3, policy="dev", pin="edge-b")
    fleet.connect("edge-a", "edge-b", "edge-c")
    before = per_edge(fleet.ask("shards"))
    drained = fleet.ask("edges.drain", edge_id="edge-b")
    assert drained["moves"] == before["edge-b"] - 3
    after = fleet.ask("shards")
    assert per_edge(after)["edge-b"] == 3
    assert per_edge(after)["edge-a"] >= before["edge-a"]
    assert per_edge(after)["edge-c"] >= before["edge-c"]
    assert {b["kind"] for b in after["last_plan"]["batches"]} == {"handover"}
    assert fleet.ask("agents.show", agent_id=9001)["owner"] == "edge-b"


def test_epochs_and_drains_survive_a_reopen(open_fleet: Callable[[], Fleet]) -> None:
    first = open_fleet()
    first.ask("agents.add", first_id=0, count=10, policy="p")
    first.connect("edge-a", "edge-b")
    first.ask("edges.drain", edge_id="edge-a")
    epoch = first.ask("shards")["epoch"]
    first.close()
    second = open_fleet()
    second.connect("edge-a", "edge-b")
    shards = second.ask("shards")
    assert shards["epoch"] > epoch
    assert per_edge(shards) == {"edge-a": 0, "edge-b": 10}


def test_a_weight_of_two_takes_about_twice_the_agents(fleet: Fleet) -> None:
    fleet.ask("agents.add", first_id=0, count=30_000, policy="p")
    fleet.connect("edge-a", "edge-b")
    epoch = fleet.ask("shards")["epoch"]
    changed = fleet.ask("edges.weight", edge_id="edge-b", weight=2)
    assert changed["epoch"] == epoch + 1
    counts = per_edge(fleet.ask("shards"))
    assert 1.8 < counts["edge-b"] / counts["edge-a"] < 2.2
    plan = fleet.ask("shards")["last_plan"]
    assert {(b["source"], b["target"]) for b in plan["batches"]} == {("edge-a", "edge-b")}
    assert changed["moves"] == plan["agents"] > 0  # more points for edge-b: moves only to it
    assert "never connected" in fleet.refused("edges.weight", edge_id="edge-z", weight=2)
    assert "weight" in fleet.refused("edges.weight", edge_id="edge-a", weight=0)
    assert "number" in fleet.refused("edges.weight", edge_id="edge-a", weight="2")


def test_the_edge_timeout_counts_from_when_the_edge_was_found_gone(fleet: Fleet) -> None:
    fleet.ask("agents.add", first_id=0, count=100, policy="p")
    fleet.connect("edge-a", "edge-b")
    fleet.now = 100.0  # no refresh since the edges connected at 0
    fleet.live.discard("edge-b")
    states = {e["edge_id"]: e["state"] for e in fleet.ask("edges.list")["edges"]}
    assert states["edge-b"] == "active"  # just found gone: not DOWN at once
    fleet.now = 105.1
    states = {e["edge_id"]: e["state"] for e in fleet.ask("edges.list")["edges"]}
    assert states["edge-b"] == "down"


def test_answers_about_hundreds_of_edges_decode_under_the_wire_limits(fleet: Fleet) -> None:
    fleet.ask("agents.add", first_id=0, count=3000, policy="p")
    for i in range(300):  # more edges than a map may have keys; one refresh for all
        fleet.live.add(f"edge-{i}")
        fleet.store.remember_edge(f"edge-{i}")
    for op in ("shards", "edges.list"):
        reply = fleet.service.answer(PlacementRequest(request_id=1, op=op))
        decoded = decode_payload(encode_payload(reply))
        assert isinstance(decoded, PlacementReply)
        assert decoded.ok
    shards = fleet.service.answer(PlacementRequest(request_id=1, op="shards")).result
    assert len(per_edge(shards)) == 300
