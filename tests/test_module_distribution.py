"""Module distribution end to end without sockets: a gateway's ModuleService and edges'
ModuleLinks over real protocol sessions (in memory), real modules.db, real Wasm policies.

Publish v1, roll v2 to 10 % then 100 %; a trapping v3 is rolled back automatically within
the bound and no agent loses state; tampered blobs and forged manifests are refused with
nothing changed; an edge offline during a rollout catches up; a fetch cut by a
disconnect resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.module_link import ModuleLink
from edgeswarm.edge.policy import PolicySet, PolicySpec
from edgeswarm.gateway.module_service import ModuleService
from edgeswarm.identity import KeyPair
from edgeswarm.registry import ModuleStore, RolloutPlan, Stage
from edgeswarm.registry.fetch import BlobCache
from edgeswarm.wire import (
    FEATURE_MODULES,
    BlobChunk,
    BlobChunkReceived,
    BlobRequested,
    ModuleReportReceived,
    ModulesAssigned,
    Session,
)
from tests.registry_fixtures import manifest_for
from tests.test_module_rollout import COUNT_STEP, TRAP_STEP
from tests.test_wire_session import events, roundtrip
from tests.test_wire_state import ready
from tests.wasm_fixtures import policy_wat

AGENTS = 1000
V1 = policy_wat(COUNT_STEP, name="counter")
V2 = policy_wat(COUNT_STEP, name="counter2")  # the same behaviour, other bytes
V3 = policy_wat(TRAP_STEP, name="counter3")
STATELESS = policy_wat(TRAP_STEP, name="x", descriptor={"state_dim": 0})
WINDOW = 3


@dataclass
class Edge:
    """One edge: its table, policies, link and session to the gateway."""

    name: str
    table: AgentTable
    policies: PolicySet
    link: ModuleLink
    session: Session
    gateway_side: Session
    ticks: int = 0
    cut_after_chunks: int | None = None
    chunks: int = 0

    def tick(self) -> None:
        self.policies.step(self.table)
        self.ticks += 1


@dataclass
class Fleet:
    """A gateway's ModuleService and its edges, moving frames until all is quiet."""

    service: ModuleService
    store: ModuleStore
    """The operator's connection to modules.db (what `edgeswarm agents` commands use)."""
    edges: list[Edge] = field(default_factory=list)
    tamper: bool = False

    def connect(self, edge: Edge) -> None:
        edge.session, edge.gateway_side = ready((FEATURE_MODULES,), (FEATURE_MODULES,))
        edge.gateway_side.send(self.service.assignments())
        self.pump(edge)
        for request in edge.link.resume():
            edge.session.send(request)
        self.pump(edge)

    def pump(self, edge: Edge) -> None:
        """Move frames between ``edge`` and the gateway until neither has more to say."""
        for _ in range(10_000):
            roundtrip(edge.session, edge.gateway_side)
            moved = False
            for event in events(edge.gateway_side):
                moved = True
                match event:
                    case BlobRequested(request=request):
                        chunk = self.service.blob_chunk(request)
                        if self.tamper:
                            data = bytes([chunk.data[0] ^ 1]) + chunk.data[1:]
                            chunk = BlobChunk(chunk.digest, chunk.offset, chunk.size, data)
                        edge.gateway_side.send(chunk)
                    case ModuleReportReceived(report=report):
                        if self.service.report(report, edge_id=edge.name):
                            self.broadcast()
            for event in events(edge.session):
                moved = True
                match event:
                    case ModulesAssigned(assign=assign):
                        for request in edge.link.on_assign(assign):
                            edge.session.send(request)
                    case BlobChunkReceived(chunk=chunk):
                        edge.chunks += 1
                        if (
                            edge.cut_after_chunks is not None
                            and edge.chunks >= edge.cut_after_chunks
                        ):
                            edge.cut_after_chunks = None
                            return  # the connection drops here
                        for request in edge.link.on_chunk(chunk):
                            edge.session.send(request)
            if not moved:
                return
        raise AssertionError("frames kept flowing")

    def broadcast(self) -> None:
        for edge in self.edges:
            if not edge.session.closed:
                edge.gateway_side.send(self.service.assignments())

    def tick(self, edge: Edge) -> None:
        """Apply what arrived, step, report: one tick of one edge."""
        edge.link.apply()
        edge.tick()
        for report in edge.link.after_tick():
            edge.session.send(report)
        self.pump(edge)

    def refresh(self) -> None:
        if self.service.refresh():
            self.broadcast()
            for edge in self.edges:
                self.pump(edge)


@contextmanager
def fleet_of(tmp_path: Path, first: RolloutPlan, modules: dict[str, bytes]) -> Iterator[Fleet]:
    """A gateway whose registry holds ``modules`` (version -> blob) as ``first.name``,
    published by a trusted key, ``first`` (a rollout from ``0.0.0``) deployed."""
    publisher = KeyPair.generate()
    store = ModuleStore(tmp_path / "gateway" / "modules.db")
    store.trust(publisher.public_key, first.name, actor="ops")
    for version, blob in modules.items():
        manifest = manifest_for(blob, publisher, name=first.name, version=version)
        store.publish(manifest.to_bytes(), blob, actor="alice")
    store.start_rollout(first, actor="ops")  # the first version: deployed
    with store, ModuleStore(tmp_path / "gateway" / "modules.db") as gateways:
        yield Fleet(ModuleService(gateways), store)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    modules = {"1.0.0": V1, "2.0.0": V2, "3.0.0": V3, "4.0.0": STATELESS}
    with fleet_of(tmp_path, plan("0.0.0", "1.0.0"), modules) as fleet:
        yield fleet


def plan(from_version: str, to_version: str, **changes: object) -> RolloutPlan:
    fields: dict[str, object] = {
        "name": "counter",
        "from_version": from_version,
        "to_version": to_version,
        "stages": (Stage(0.1, hold_ticks=4), Stage(1.0, hold_ticks=4)),
        "window_ticks": WINDOW,
        "min_agent_ticks": 10,
    }
    fields.update(changes)
    return RolloutPlan(**fields)  # type: ignore[arg-type]


def new_edge(fleet: Fleet, tmp_path: Path, name: str, first_id: int) -> Edge:
    table = AgentTable.create(count=AGENTS, obs_dim=8, state_dim=2, act_dim=2, first_id=first_id)
    policies = PolicySet([PolicySpec(V1, name="counter")])
    link = ModuleLink(table, policies, BlobCache(tmp_path / name / "modules"), {"counter": 0})
    session, gateway_side = ready((FEATURE_MODULES,), (FEATURE_MODULES,))
    edge = Edge(name, table, policies, link, session, gateway_side)
    fleet.edges.append(edge)
    fleet.connect(edge)
    return edge


def on_version(edge: Edge) -> dict[str, int]:
    return edge.link.versions().get("counter", {})


def test_rollout_v2_to_ten_then_all_and_a_trapping_v3_rollback_keeps_state(
    fleet: Fleet, tmp_path: Path
) -> None:
    edge = new_edge(fleet, tmp_path, "edge-a", 0)
    fleet.tick(edge)
    assert on_version(edge) == {"1.0.0": AGENTS}

    fleet.store.start_rollout(plan("1.0.0", "2.0.0"), actor="ops")
    fleet.refresh()
    fleet.tick(edge)
    first = on_version(edge)
    assert 0.06 * AGENTS < first["2.0.0"] < 0.14 * AGENTS
    for _ in range(20):
        fleet.tick(edge)
        if fleet.store.deployment("counter").version == "2.0.0":  # type: ignore[union-attr]
            break
    fleet.tick(edge)
    assert on_version(edge) == {"2.0.0": AGENTS}
    assert np.all(edge.table.state[:, 0] == edge.ticks)  # every agent counted every tick
    actions = [(h.action, h.actor) for h in fleet.store.history("counter")]
    assert ("advance", "rollout") in actions
    assert ("complete", "rollout") in actions

    # v3 traps: rolled back within the window, nobody loses a count
    fleet.store.start_rollout(plan("2.0.0", "3.0.0"), actor="ops")
    fleet.refresh()
    before = edge.ticks
    for _ in range(WINDOW + 2):
        fleet.tick(edge)
        if fleet.store.deployment("counter").plan is None:  # type: ignore[union-attr]
            break
    assert edge.ticks - before <= WINDOW + 1
    last = fleet.store.history("counter")[-1]
    assert (last.action, last.actor, last.version) == ("rollback", "rollout", "3.0.0")
    fleet.tick(edge)
    assert on_version(edge) == {"2.0.0": AGENTS}
    trapped = edge.table.state[:, 0] < edge.ticks
    assert trapped.any()  # the agents that ran v3 missed the ticks it trapped in...
    assert np.all(edge.table.state[trapped, 0] >= edge.ticks - (WINDOW + 1))
    assert np.all(edge.table.state[~trapped, 0] == edge.ticks)  # ...and lost nothing else
    assert np.isfinite(edge.table.state).all()


def test_rollback_by_the_operator_restores_the_previous_version_everywhere(
    fleet: Fleet, tmp_path: Path
) -> None:
    edges = [new_edge(fleet, tmp_path, f"edge-{i}", i * AGENTS) for i in range(2)]
    fleet.store.start_rollout(plan("1.0.0", "2.0.0", stages=(Stage(1.0),)), actor="ops")
    fleet.refresh()
    for edge in edges:
        fleet.tick(edge)
        fleet.tick(edge)
    assert fleet.store.deployment("counter").version == "2.0.0"  # type: ignore[union-attr]
    fleet.store.rollback("counter", actor="bob")
    fleet.refresh()
    for edge in edges:
        fleet.tick(edge)
        assert on_version(edge) == {"1.0.0": AGENTS}
        assert np.all(edge.table.state[:, 0] == edge.ticks)
    assert fleet.store.history("counter")[-1].actor == "bob"


def test_an_edge_offline_during_a_rollout_catches_up(fleet: Fleet, tmp_path: Path) -> None:
    online = new_edge(fleet, tmp_path, "edge-on", 0)
    fleet.store.start_rollout(plan("1.0.0", "2.0.0", stages=(Stage(1.0, 2),)), actor="ops")
    fleet.refresh()
    for _ in range(6):
        fleet.tick(online)
    assert fleet.store.deployment("counter").version == "2.0.0"  # type: ignore[union-attr]
    late = new_edge(fleet, tmp_path, "edge-late", AGENTS)  # connects after the rollout
    fleet.tick(late)
    assert on_version(late) == {"2.0.0": AGENTS}


def test_a_fetch_cut_by_a_disconnect_resumes_where_it_stopped(fleet: Fleet, tmp_path: Path) -> None:
    edge = new_edge(fleet, tmp_path, "edge-a", 0)
    edge.link.chunk_bytes = 64
    fleet.store.start_rollout(plan("1.0.0", "2.0.0", stages=(Stage(1.0, 2),)), actor="ops")
    digest = fleet.store.module("counter", "2.0.0").manifest.digest
    edge.chunks, edge.cut_after_chunks = 0, 3
    fleet.refresh()
    part = edge.link.cache.part_path(digest)
    assert part.stat().st_size == 2 * 64  # two chunks appended, the third lost in the cut
    fleet.connect(edge)  # a new session
    assert edge.link.cache.get(digest) == V2
    assert not part.exists()
    fleet.tick(edge)
    assert "2.0.0" in on_version(edge)


def test_tampered_blob_from_the_gateway_is_refused_and_nothing_changes(
    fleet: Fleet, tmp_path: Path
) -> None:
    edge = new_edge(fleet, tmp_path, "edge-a", 0)
    fleet.tick(edge)
    fleet.tamper = True
    fleet.store.start_rollout(plan("1.0.0", "2.0.0", stages=(Stage(1.0),)), actor="ops")
    fleet.refresh()
    for _ in range(3):
        fleet.tick(edge)
    assert on_version(edge) == {"1.0.0": AGENTS}
    assert edge.link.refused == 1
    assert np.all(edge.table.state[:, 0] == edge.ticks)


def test_signature_forged_in_an_assignment_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    from edgeswarm.wire import ModuleAssign, ModuleAssignment

    edge = new_edge(fleet, tmp_path, "edge-a", 0)
    fleet.tick(edge)
    v2 = fleet.store.module("counter", "2.0.0").manifest_bytes
    forged = v2.replace(b'"state_dim":2', b'"state_dim":1')
    assert edge.link.on_assign(ModuleAssign((ModuleAssignment("counter", forged),))) == []
    assert edge.link.refused == 1
    edge.link.apply()
    fleet.tick(edge)
    assert on_version(edge) == {"1.0.0": AGENTS}


def test_tamper_another_state_layout_is_refused_by_the_edge(fleet: Fleet, tmp_path: Path) -> None:
    edge = new_edge(fleet, tmp_path, "edge-a", 0)
    fleet.tick(edge)
    fleet.store.start_rollout(plan("1.0.0", "4.0.0", stages=(Stage(1.0),)), actor="ops")
    fleet.refresh()
    fleet.tick(edge)
    assert on_version(edge) == {"1.0.0": AGENTS}
    assert edge.link.refused >= 1
    assert np.all(edge.table.state[:, 0] == edge.ticks)


class CountingCache(BlobCache):
    """A real blob cache that counts its reads."""

    reads = 0

    def get(self, digest: str) -> bytes | None:
        self.reads += 1
        return super().get(digest)


def test_an_applied_assignment_costs_the_ticks_after_it_no_blob_read(
    fleet: Fleet, tmp_path: Path
) -> None:
    edge = new_edge(fleet, tmp_path, "edge-a", 0)
    cache = CountingCache(edge.link.cache.directory)
    edge.link.cache = cache
    fleet.tick(edge)
    fleet.store.start_rollout(plan("1.0.0", "2.0.0", stages=(Stage(0.5, 100),)), actor="ops")
    fleet.refresh()
    fleet.tick(edge)  # applies the rollout: reads both blobs once
    assert "2.0.0" in on_version(edge)
    reads = cache.reads
    for _ in range(10):
        fleet.tick(edge)
    assert cache.reads == reads  # an 8 MiB module is not read and hashed every tick
    assert np.all(edge.table.state[:, 0] == edge.ticks)
