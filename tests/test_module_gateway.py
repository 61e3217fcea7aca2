"""The gateway's module distribution without sockets: real modules.db, real modules, the
frames a session would carry; what each edge gets, what a bad request gets, what the
per-version metrics say (and that no edge can invent their labels)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edgeswarm.gateway.module_distribution import ModuleDistribution
from edgeswarm.identity import KeyPair
from edgeswarm.registry import ModuleStore, RolloutPlan, Stage
from edgeswarm.wire import (
    BlobChunk,
    BlobRequest,
    BlobRequested,
    Error,
    ErrorCode,
    ModuleAssign,
    ModuleReport,
    ModuleReportReceived,
)
from tests.registry_fixtures import manifest_for
from tests.test_module_distribution import V1, V2, V3


@dataclass(eq=False)
class Peer:
    """An edge session as the distribution sees it: what it was sent."""

    edge_id: str | None
    declared_agents: int = 1000
    sent: list[ModuleAssign | BlobChunk | Error] = field(default_factory=list)

    def send_module_frame(self, frame: ModuleAssign | BlobChunk | Error) -> None:
        self.sent.append(frame)


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[ModuleStore]:
    """The operator's connection to modules.db: counter 1.0.0 deployed, 2.0.0 and 3.0.0."""
    publisher = KeyPair.generate()
    with ModuleStore(tmp_path / "modules.db") as store:
        store.trust(publisher.public_key, "counter", actor="ops")
        for version, blob in (("1.0.0", V1), ("2.0.0", V2), ("3.0.0", V3)):
            manifest = manifest_for(blob, publisher, name="counter", version=version)
            store.publish(manifest.to_bytes(), blob, actor="alice")
        store.start_rollout(plan("1.0.0"), actor="ops")
        yield store


def plan(to_version: str, from_version: str = "", **changes: object) -> RolloutPlan:
    fields: dict[str, object] = {
        "name": "counter",
        "from_version": from_version,
        "to_version": to_version,
        "stages": (Stage(0.5, hold_ticks=100),),
        "window_ticks": 2,
        "min_agent_ticks": 10,
    }
    return RolloutPlan(**{**fields, **changes})  # type: ignore[arg-type]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def distribution(
    tmp_path: Path, operator: ModuleStore, registry: CollectorRegistry
) -> Iterator[ModuleDistribution]:
    with ModuleStore(tmp_path / "modules.db") as gateways:
        yield ModuleDistribution(gateways, registry=registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def report(version: str, *, rollout: int = 0, agents: int = 100, faults: int = 0) -> ModuleReport:
    return ModuleReport("counter", version, rollout, 2, 2 * agents, faults)


def test_an_edge_gets_its_assignment_and_every_change_an_operator_makes(
    distribution: ModuleDistribution, operator: ModuleStore
) -> None:
    edge = Peer("edge-a")
    distribution.attach(edge)
    (first,) = edge.sent
    assert isinstance(first, ModuleAssign)
    assert [a.target for a in first.assignments] == [None]
    assert not distribution.refresh()  # nothing changed: nothing sent
    operator.start_rollout(plan("2.0.0", "1.0.0"), actor="ops")
    assert distribution.refresh()
    second = edge.sent[-1]
    assert isinstance(second, ModuleAssign)
    assert second.assignments[0].target == operator.module("counter", "2.0.0").manifest_bytes
    distribution.detach(edge)
    operator.rollback("counter", actor="bob")
    assert distribution.refresh()
    assert len(edge.sent) == 2  # a session that ended gets nothing


def test_tamper_a_blob_request_for_an_unknown_digest_gets_unknown_blob_and_the_session_goes_on(
    distribution: ModuleDistribution, operator: ModuleStore, registry: CollectorRegistry
) -> None:
    edge = Peer("edge-a")
    distribution.attach(edge)
    missing = "sha256:" + "0" * 64
    distribution.receive(edge, BlobRequested(BlobRequest(missing, 0, 64)))
    refused = edge.sent[-1]
    assert isinstance(refused, Error)
    assert refused.code == ErrorCode.UNKNOWN_BLOB
    assert value(registry, "edgeswarm_module_requests_refused_total", reason="unknown_blob") == 1
    digest = operator.module("counter", "1.0.0").manifest.digest
    distribution.receive(edge, BlobRequested(BlobRequest(digest, 0, 64)))
    chunk = edge.sent[-1]
    assert isinstance(chunk, BlobChunk)
    assert chunk.data == V1[:64]
    assert value(registry, "edgeswarm_module_blob_bytes_sent_total") == 64


def test_reports_count_per_version_and_only_for_versions_assigned(
    distribution: ModuleDistribution, registry: CollectorRegistry
) -> None:
    a, b = Peer("edge-a"), Peer("edge-b")
    for edge in (a, b):
        distribution.attach(edge)
    distribution.receive(a, ModuleReportReceived(report("1.0.0", agents=100)))
    distribution.receive(b, ModuleReportReceived(report("1.0.0", agents=30, faults=6)))
    assert value(registry, "edgeswarm_module_agents", module="counter", version="1.0.0") == 130
    faults = value(registry, "edgeswarm_module_faults_total", module="counter", version="1.0.0")
    assert faults == 6
    # a version nobody is assigned, a module that does not exist: no series, counted
    distribution.receive(a, ModuleReportReceived(report("9.9.9")))
    invented = ModuleReport("made-up", "1.0.0", 0, 1, 1, 0)
    distribution.receive(a, ModuleReportReceived(invented))
    assert value(registry, "edgeswarm_module_agents", module="counter", version="9.9.9") is None
    assert value(registry, "edgeswarm_module_agents", module="made-up", version="1.0.0") is None
    refused = "edgeswarm_module_requests_refused_total"
    assert value(registry, refused, reason="report_not_assigned") == 2
    inflated = report("1.0.0", agents=5000)  # more than its HELLO's 1000 agents
    distribution.receive(b, ModuleReportReceived(inflated))
    assert value(registry, "edgeswarm_module_agents", module="counter", version="1.0.0") == 130
    assert value(registry, refused, reason="report_inconsistent") == 1
    distribution.detach(b)  # its agents no longer count
    assert value(registry, "edgeswarm_module_agents", module="counter", version="1.0.0") == 100


def test_rollback_decided_by_reports_reaches_every_edge(
    distribution: ModuleDistribution, operator: ModuleStore, registry: CollectorRegistry
) -> None:
    edges = [Peer("edge-a"), Peer("edge-b")]
    for edge in edges:
        distribution.attach(edge)
    operator.start_rollout(plan("3.0.0", "1.0.0"), actor="ops")
    distribution.refresh()
    rollout = operator.deployment("counter").rollout  # type: ignore[union-attr]
    trapping = report("3.0.0", rollout=rollout, agents=50, faults=100)
    distribution.receive(edges[0], ModuleReportReceived(trapping))
    for edge in edges:
        last = edge.sent[-1]
        assert isinstance(last, ModuleAssign)
        assert last.assignments[0].target is None  # everyone back on 1.0.0
    actions = "edgeswarm_module_rollout_decisions_total"
    assert value(registry, actions, module="counter", action="rollback") == 1
    assert operator.history("counter")[-1].actor == "rollout"
