"""Registry replication between two gateways' services without sockets: real ``modules.db``
files, real modules and keys, the REGISTRY_* frames a peer session would carry pumped
between them (and altered, for the tamper cases). The merge rules themselves
(stamps, last writer wins) are in ``test_replica_merge.py``; real processes over
QUIC in ``test_registry_replication.py``."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from edgeswarm.gateway.module_distribution import ModuleDistribution
from edgeswarm.gateway.module_replication import ModuleReplication
from edgeswarm.identity import KeyPair
from edgeswarm.registry import ModuleStore, RolloutPlan, Stage
from edgeswarm.wire import RegistryChunk, RegistryIndex, RegistryRequest
from tests.registry_fixtures import manifest_for, resigned
from tests.test_module_distribution import V1, V2

Frame = RegistryIndex | RegistryRequest | RegistryChunk
CHUNK = 64
"""Bytes per REGISTRY_REQUEST here: every module crosses in many chunks."""


@dataclass(eq=False)
class Side:
    """One gateway: its store, distribution, replication and metrics; ``operator`` is another
    connection to the same ``modules.db``, as ``edgeswarm agents`` in another process."""

    store: ModuleStore
    operator: ModuleStore
    replication: ModuleReplication
    metrics: CollectorRegistry

    def refused(self, reason: str) -> float:
        value = self.metrics.get_sample_value(
            "edgeswarm_gateway_module_replication_refused_total", {"reason": reason}
        )
        return value or 0.0


@dataclass(eq=False)
class Link:
    """One session between two sides: each end is the other's ``RegistryPeer``."""

    queue: deque[tuple[Side, End, Frame]] = field(default_factory=deque)
    alter: Callable[[Frame], Frame] = lambda frame: frame
    """What the wire does to frames from ``a`` to ``b`` (a lying peer)."""

    def pump(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.queue:
                return
            side, end, frame = self.queue.popleft()
            side.replication.receive(end, frame)
        raise AssertionError("the sides never went quiet")


@dataclass(eq=False)
class End:
    """The far end of ``link`` as ``here`` sees it: what ``here`` sends goes to ``there``."""

    link: Link
    there: Side
    far: End | None
    name: str
    lies: bool = False

    @property
    def registry_peer_id(self) -> str:
        return self.name

    def send_registry_frame(self, frame: Frame) -> None:
        assert self.far is not None
        if self.lies:
            frame = self.link.alter(frame)
        self.link.queue.append((self.there, self.far, frame))


def connect(
    a: Side,
    b: Side,
    *,
    alter: Callable[[Frame], Frame] | None = None,
    queue: deque[tuple[Side, End, Frame]] | None = None,
) -> Link:
    """Attach ``a`` and ``b`` to each other (as a session would) and exchange indexes;
    ``alter`` changes every frame ``a`` sends to ``b``; with ``queue`` (shared by several
    links, frames interleaved) nothing is pumped yet."""
    link = Link() if queue is None else Link(queue)
    b_seen_by_a = End(link, b, None, "gw-b", lies=alter is not None)  # a sends, b receives
    a_seen_by_b = End(link, a, b_seen_by_a, "gw-a")
    b_seen_by_a.far = a_seen_by_b
    if alter is not None:
        link.alter = alter
    a.replication.attach(b_seen_by_a)
    b.replication.attach(a_seen_by_b)
    if queue is None:
        link.pump()
    return link


@pytest.fixture
def publisher() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture
def sides(tmp_path: Path, publisher: KeyPair) -> Iterator[Callable[..., Side]]:
    opened: list[ModuleStore] = []

    def make(name: str, *, trusts: bool = True) -> Side:
        store = ModuleStore(tmp_path / name / "modules.db")
        operator = ModuleStore(tmp_path / name / "modules.db")
        opened.extend((store, operator))
        if trusts:
            operator.trust(publisher.public_key, "counter", actor="ops")
        metrics = CollectorRegistry()
        distribution = ModuleDistribution(store, registry=metrics)
        return Side(
            store,
            operator,
            ModuleReplication(distribution, registry=metrics, chunk_bytes=CHUNK),
            metrics,
        )

    yield make
    for store in opened:
        store.close()


def publish(side: Side, publisher: KeyPair, version: str, blob: bytes) -> None:
    manifest = manifest_for(blob, publisher, name="counter", version=version)
    side.operator.publish(manifest.to_bytes(), blob, actor="alice")


def plan(to_version: str, from_version: str = "") -> RolloutPlan:
    return RolloutPlan(
        name="counter", from_version=from_version, to_version=to_version, stages=(Stage(1.0),)
    )


def test_a_publish_and_a_rollout_at_one_gateway_reach_the_other(
    sides: Callable[..., Side], publisher: KeyPair
) -> None:
    a, b = sides("a"), sides("b")
    link = connect(a, b)
    publish(a, publisher, "1.0.0", V1)
    a.operator.start_rollout(plan("1.0.0"), actor="ops")
    a.replication.poll()  # what the gateway's loop does every POLL_INTERVAL_S
    link.pump()
    assert (
        b.store.module("counter", "1.0.0").manifest_bytes
        == a.store.module("counter", "1.0.0").manifest_bytes
    )
    assert b.store.blob(a.store.module("counter").manifest.digest) == V1
    assert len(V1) > 4 * CHUNK
    received = "edgeswarm_gateway_module_replication_bytes_received_total"
    assert b.metrics.get_sample_value(received) == len(V1)
    deployment = b.store.deployment("counter")
    assert deployment is not None
    assert deployment.version == "1.0.0"
    assert b.store.deployment_records() == a.store.deployment_records()
    actions = [(h.action, h.actor) for h in b.store.history("counter")]
    assert actions == [("trust", "ops"), ("publish", "peer:gw-a"), ("replicate", "peer:gw-a")]
    # and back: a rollback at b is fleet-wide
    publish(b, publisher, "2.0.0", V2)
    b.operator.start_rollout(plan("2.0.0", "1.0.0"), actor="ops")
    b.replication.poll()
    link.pump()
    a_deployment = a.store.deployment("counter")
    assert a_deployment is not None
    assert a_deployment.plan is not None
    assert a_deployment.plan.to_version == "2.0.0"
    b.operator.rollback("counter", actor="ops")
    b.replication.poll()
    link.pump()
    a_deployment = a.store.deployment("counter")
    assert a_deployment is not None
    assert a_deployment.plan is None
    assert a_deployment.version == "1.0.0"
    assert a.store.deployment_records() == b.store.deployment_records()
    # the edges connected to a were told (their MODULE_ASSIGN changed)
    assert a.replication.distribution.service.assignments().assignments[0].target is None


def test_a_gateway_that_missed_changes_catches_up_on_the_next_session(
    sides: Callable[..., Side], publisher: KeyPair
) -> None:
    a, b = sides("a"), sides("b")
    publish(a, publisher, "1.0.0", V1)
    publish(a, publisher, "2.0.0", V2)
    a.operator.start_rollout(plan("1.0.0"), actor="ops")
    a.operator.start_rollout(plan("2.0.0", "1.0.0"), actor="ops")
    connect(a, b)  # the first index of the session is the catch-up
    assert set(b.store.refs()) == {("counter", "1.0.0"), ("counter", "2.0.0")}
    assert b.store.deployment_records() == a.store.deployment_records()


def tamper_blob(frame: Frame) -> Frame:
    if isinstance(frame, RegistryChunk):
        data = bytearray(frame.data)
        data[len(data) // 2] ^= 0xFF
        return replace(frame, data=bytes(data))
    return frame


def test_a_tampered_blob_from_a_peer_is_refused_and_nothing_changes(
    sides: Callable[..., Side], publisher: KeyPair
) -> None:
    a, b = sides("a"), sides("b")
    publish(a, publisher, "1.0.0", V1)
    a.operator.start_rollout(plan("1.0.0"), actor="ops")
    before = b.store.history()
    connect(a, b, alter=tamper_blob)
    assert b.refused("digest") == 1
    assert b.store.refs() == {}
    assert b.store.deployments() == []
    assert b.store.history() == before
    assert b.refused("deployment_unknown_version") == 1  # it named the refused version


def test_an_untrusted_or_re_signed_manifest_from_a_peer_is_refused(
    sides: Callable[..., Side], publisher: KeyPair
) -> None:
    a, b = sides("a"), sides("b", trusts=False)
    publish(a, publisher, "1.0.0", V1)
    link = connect(a, b)
    assert b.refused("untrusted") == 1
    assert b.store.refs() == {}
    a.replication.poll()  # asked once: the refusal holds until b's trust policy changes
    link.pump()
    assert b.refused("untrusted") == 1
    b.operator.trust(publisher.public_key, "counter", actor="ops")  # now b trusts the key
    a.operator.record("ops", "note", "counter", "", {})  # any change: a sends its index again
    a.replication.poll()
    link.pump()
    assert set(b.store.refs()) == {("counter", "1.0.0")}
    # a peer that re-signs a manifest with a key of its own gets nothing in either
    intruder = KeyPair.generate()
    c = sides("c")

    def resign(frame: Frame) -> Frame:
        if isinstance(frame, RegistryChunk):
            manifest = manifest_for(V1, publisher, name="counter", version="1.0.0")
            lie = resigned(manifest, intruder, publisher=intruder.public_key)
            return replace(frame, manifest=lie.to_bytes())
        return frame

    connect(a, c, alter=resign)
    assert c.refused("manifest") + c.refused("untrusted") == 1  # the digest differs: manifest
    assert c.store.refs() == {}


def test_a_deployment_of_a_version_refused_here_applies_once_trust_lets_the_version_in(
    sides: Callable[..., Side], publisher: KeyPair
) -> None:
    a, b = sides("a"), sides("b", trusts=False)
    publish(a, publisher, "1.0.0", V1)
    a.operator.start_rollout(plan("1.0.0"), actor="ops")
    link = connect(a, b)
    assert b.refused("untrusted") == 1
    assert b.refused("deployment_unknown_version") == 1
    b.operator.trust(publisher.public_key, "counter", actor="ops")
    b.replication.poll()  # b's loop sees its new trust rule and fetches; a sends nothing new
    link.pump()
    assert set(b.store.refs()) == {("counter", "1.0.0")}
    deployment = b.store.deployment("counter")  # was only applied at the link's next session
    assert deployment is not None
    assert deployment.version == "1.0.0"
    assert b.store.deployment_records() == a.store.deployment_records()


def test_a_chunk_out_of_order_or_not_asked_for_is_refused_and_the_link_goes_on(
    sides: Callable[..., Side], publisher: KeyPair
) -> None:
    a, b = sides("a"), sides("b")
    publish(a, publisher, "1.0.0", V1)

    def shift(frame: Frame) -> Frame:
        if isinstance(frame, RegistryChunk):
            return replace(frame, offset=frame.offset + 1, data=frame.data[1:] or b"x")
        return frame

    connect(a, b, alter=shift)
    assert b.refused("bad_chunk") == 1
    assert b.store.refs() == {}
    ghost = RegistryChunk("counter", "9.0.0", b"{}", 0, 1, b"x")
    [end] = list(b.replication._peers)
    b.replication.receive(end, ghost)
    assert b.refused("unexpected_chunk") == 1
    publish(a, publisher, "2.0.0", V2)  # the link goes on: an honest frame still counts
    a.replication.poll()


def test_a_version_held_with_another_digest_is_a_conflict_never_fetched(
    sides: Callable[..., Side], publisher: KeyPair
) -> None:
    a, b = sides("a"), sides("b")
    publish(a, publisher, "1.0.0", V1)
    publish(b, publisher, "1.0.0", V2)  # the same name@version, other bytes
    connect(a, b)
    assert b.refused("version_conflict") == 1
    assert a.refused("version_conflict") == 1
    assert b.store.blob(b.store.module("counter").manifest.digest) == V2


def test_two_sessions_between_the_same_gateways_fetch_each_version_once(
    sides: Callable[..., Side], publisher: KeyPair
) -> None:
    a, b = sides("a"), sides("b")
    publish(a, publisher, "1.0.0", V1)
    a.operator.start_rollout(plan("1.0.0"), actor="ops")
    shared: deque[tuple[Side, End, Frame]] = deque()
    first = connect(a, b, queue=shared)  # --peer both ways: two sessions, frames interleaved
    connect(a, b, queue=shared)
    first.pump()
    assert set(b.store.refs()) == {("counter", "1.0.0")}
    assert b.store.deployment_records() == a.store.deployment_records()
    received = "edgeswarm_gateway_module_replication_bytes_received_total"
    assert b.metrics.get_sample_value(received) == len(V1)  # fetched once
    refused = [m for m in b.metrics.collect() if m.name.endswith("replication_refused")]
    assert [sample for metric in refused for sample in metric.samples] == []  # none refused
