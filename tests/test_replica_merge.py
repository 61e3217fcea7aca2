"""The merge rules of registry replication, sans-I/O (``registry/replica.py``) and as
``modules.db`` applies them: stamps, last writer wins whatever the order records arrive
in, concurrent rollouts at two gateways, what a transfer takes from a peer; and the
REGISTRY_* frames on the wire (only between gateways, only with feature ``registry``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest

from edgeswarm.identity import KeyPair
from edgeswarm.registry import (
    FetchError,
    ManifestError,
    ModuleStore,
    RolloutError,
    RolloutPlan,
    Stage,
    UnknownModuleError,
)
from edgeswarm.registry.replica import (
    MAX_COUNTER,
    DeploymentRecord,
    ModuleRef,
    ModuleTransfer,
    Stamp,
    missing,
    wins,
)
from edgeswarm.registry.rollout import plan_to_json
from edgeswarm.wire import (
    FEATURE_REGISTRY,
    PROTOCOL_VERSION,
    Auth,
    Challenge,
    DeploymentEntry,
    Hello,
    IndexEntry,
    LocalProtocolError,
    MalformedFrame,
    RegistryChunk,
    RegistryIndex,
    RegistryRequest,
    Role,
    Session,
    SessionConfig,
    Welcome,
    decode_payload,
    encode_frame,
    encode_payload,
)
from tests.registry_fixtures import manifest_for
from tests.test_module_distribution import V1, V2

DIGEST = "sha256:" + "ab" * 32

REGISTRY_FRAMES: list[RegistryIndex | RegistryRequest | RegistryChunk] = [
    RegistryIndex(
        (IndexEntry("counter", "1.0.0", DIGEST),),
        (DeploymentEntry("counter", "1.0.0", None, 3, "{}", 7, "abcd"),),
    ),
    RegistryRequest("counter", "1.0.0", 0, 1024),
    RegistryChunk("counter", "1.0.0", b"{}", 4, 10, b"abcdef"),
]
"""One frame of each type of feature ``registry`` (``test_wire_codec`` covers them too)."""


def record(version: str, counter: int, origin: str, **changes: object) -> DeploymentRecord:
    fields: dict[str, object] = {
        "name": "counter",
        "version": version,
        "previous": None,
        "rollout": counter,
        "plan": None,
        "stamp": Stamp(counter, origin),
    }
    fields.update(changes)
    return DeploymentRecord(**fields)  # type: ignore[arg-type]


def test_the_greater_stamp_wins_counter_first_then_origin() -> None:
    old, new = record("1.0.0", 1, "zz"), record("2.0.0", 2, "aa")
    assert wins(new, old)
    assert not wins(old, new)
    tie_low, tie_high = record("1.0.0", 3, "aa"), record("2.0.0", 3, "bb")
    assert wins(tie_high, tie_low)
    assert not wins(tie_low, tie_high)
    assert not wins(old, old)  # the same record again changes nothing
    assert wins(old, None)


def test_missing_fetches_what_is_absent_and_never_a_version_held_with_other_bytes() -> None:
    other = "sha256:" + "cd" * 32
    remote = [ModuleRef("a", "1", DIGEST), ModuleRef("a", "2", DIGEST), ModuleRef("b", "1", other)]
    wanted, conflicts = missing(remote, {("a", "1"): DIGEST, ("b", "1"): DIGEST})
    assert wanted == [ModuleRef("a", "2", DIGEST)]
    assert conflicts == [ModuleRef("b", "1", other)]


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[list[ModuleStore]]:
    """Three registries that hold counter 1.0.0 and 2.0.0 (the same bytes)."""
    publisher = KeyPair.generate()
    opened = []
    for name in "abc":
        store = ModuleStore(tmp_path / name / "modules.db")
        store.trust(publisher.public_key, "counter", actor="ops")
        for version, blob in (("1.0.0", V1), ("2.0.0", V2)):
            manifest = manifest_for(blob, publisher, name="counter", version=version)
            store.publish(manifest.to_bytes(), blob, actor="alice")
        opened.append(store)
    yield opened
    for store in opened:
        store.close()


def plan(to_version: str, from_version: str = "") -> RolloutPlan:
    return RolloutPlan(
        name="counter", from_version=from_version, to_version=to_version, stages=(Stage(1.0),)
    )


def test_every_local_change_bumps_the_stamp_past_the_record_it_changed(
    stores: list[ModuleStore],
) -> None:
    a = stores[0]
    a.start_rollout(plan("1.0.0"), actor="ops")
    [first] = a.deployment_records()
    assert first.stamp == Stamp(1, a.replica_id)
    a.start_rollout(plan("2.0.0", "1.0.0"), actor="ops")
    a.rollback("counter", actor="ops")
    [last] = a.deployment_records()
    assert last.stamp == Stamp(3, a.replica_id)
    assert last.plan is None
    b = stores[1]
    assert b.apply_deployment(last, actor="peer:a")
    b.start_rollout(plan("2.0.0", "1.0.0"), actor="ops")  # after a peer's: counts past it
    [at_b] = b.deployment_records()
    assert at_b.stamp == Stamp(4, b.replica_id)


def test_records_applied_in_any_order_converge_to_the_same_one(
    stores: list[ModuleStore],
) -> None:
    rollout = plan_to_json(plan("2.0.0", "1.0.0"))
    records = [
        record("1.0.0", 1, "a"),
        record("1.0.0", 2, "b", plan=rollout),
        record("2.0.0", 2, "c", previous="1.0.0"),  # concurrent with b's: c wins the tie
        record("1.0.0", 1, "z"),
    ]
    results = set()
    for order in itertools.permutations(records):
        store = stores[0]
        with store._db:  # start over: no deployment, no stamp
            store._db.execute("DELETE FROM deployments")
            store._db.execute("DELETE FROM stamps")
        for r in order:
            store.apply_deployment(r, actor="peer:x")
        results.add(tuple(store.deployment_records()))
    assert results == {(records[2],)}


def test_concurrent_rollouts_at_two_gateways_end_with_the_same_one_at_both(
    stores: list[ModuleStore],
) -> None:
    a, b = stores[0], stores[1]
    a.start_rollout(plan("1.0.0"), actor="ops")
    b.apply_deployment(a.deployment_records()[0], actor="peer:a")
    # partitioned: both operators roll 2.0.0 out, each with their own plan
    a.start_rollout(plan("2.0.0", "1.0.0"), actor="alice")
    half = RolloutPlan(
        name="counter", from_version="1.0.0", to_version="2.0.0", stages=(Stage(0.5), Stage(1.0))
    )
    b.start_rollout(half, actor="bob")
    [at_a], [at_b] = a.deployment_records(), b.deployment_records()
    assert at_a.stamp.counter == at_b.stamp.counter == 2  # concurrent: a tie on the counter
    assert at_a.plan != at_b.plan
    a.apply_deployment(at_b, actor="peer:b")
    b.apply_deployment(at_a, actor="peer:a")
    winner = max(at_a, at_b, key=lambda r: r.stamp)  # the greater replica id
    assert a.deployment_records() == b.deployment_records() == [winner]


def test_a_record_naming_a_version_not_held_or_out_of_bounds_changes_nothing(
    stores: list[ModuleStore],
) -> None:
    a = stores[0]
    before = a.history()
    with pytest.raises(UnknownModuleError):
        a.apply_deployment(record("9.0.0", 5, "b"), actor="peer:b")
    with pytest.raises(RolloutError):
        a.apply_deployment(record("1.0.0", 5, "b", plan="{not json"), actor="peer:b")
    other = plan_to_json(RolloutPlan(name="other", from_version="", to_version="1.0.0"))
    with pytest.raises(RolloutError):
        a.apply_deployment(record("1.0.0", 5, "b", plan=other), actor="peer:b")
    with pytest.raises(RolloutError):  # a counter no later local change could count past
        a.apply_deployment(record("1.0.0", MAX_COUNTER + 1, "b"), actor="peer:b")
    assert a.deployments() == []
    assert a.history() == before
    assert a.apply_deployment(record("1.0.0", MAX_COUNTER, "b"), actor="peer:b")
    a.start_rollout(plan("2.0.0", "1.0.0"), actor="ops")  # a local change still counts past it
    [taken] = a.deployment_records()
    assert taken.stamp == Stamp(MAX_COUNTER + 1, a.replica_id)


def test_a_transfer_takes_only_chunks_that_follow_under_the_signed_manifest() -> None:
    publisher = KeyPair.generate()
    manifest = manifest_for(V1, publisher, name="counter", version="1.0.0")
    ref = ModuleRef("counter", "1.0.0", manifest.digest)
    document = manifest.to_bytes()
    transfer = ModuleTransfer(ref, chunk_bytes=16)
    assert transfer.next_offset_length() == (0, 16)
    assert not transfer.receive(document, 0, len(V1), V1[:16])
    assert transfer.next_offset_length() == (16, 16)
    with pytest.raises(FetchError):
        transfer.receive(document, 20, len(V1), V1[20:36])  # a gap
    with pytest.raises(FetchError):
        transfer.receive(document, 16, len(V1) + 1, V1[16:32])  # another size than signed
    with pytest.raises(FetchError):
        transfer.receive(document + b" ", 16, len(V1), V1[16:32])  # another manifest
    assert transfer.receive(document, 16, len(V1), V1[16:])
    assert transfer.blob() == V1
    wrong = ModuleTransfer(ModuleRef("counter", "2.0.0", manifest.digest))
    with pytest.raises(ManifestError):
        wrong.receive(document, 0, len(V1), V1)  # the manifest of another version


def test_registry_frames_round_trip_and_go_only_between_gateways() -> None:
    frames = REGISTRY_FRAMES
    for frame in frames:
        assert decode_payload(encode_payload(frame)) == frame
    edge = _ready(Role.EDGE)
    with pytest.raises(LocalProtocolError):
        edge.send(frames[0])
    gateway = _ready(Role.GATEWAY)
    gateway.send(frames[0])  # allowed: a peer gateway with feature registry
    without = _ready(Role.GATEWAY, features=())
    with pytest.raises(LocalProtocolError):
        without.send(frames[1])


def _ready(role: Role, *, features: tuple[str, ...] = (FEATURE_REGISTRY,)) -> Session:
    """A client session in READY with ``role`` and ``features`` (a WELCOME fed in)."""
    key = KeyPair.generate()
    session = Session(SessionConfig(is_client=True), now=0.0)
    hello = Hello(PROTOCOL_VERSION, role, "peer", key.public_key, features=features)
    session.hello(hello)
    session.receive_data(encode_frame(Challenge(nonce=b"n" * 32, gateway_id="gw")), 0.0)
    while session.next_event() is not None:
        pass
    session.authenticate(Auth(signature=b"s" * 64))
    welcome = Welcome(
        version=PROTOCOL_VERSION,
        session_id="s",
        gateway_id="gw",
        max_frame_bytes=1 << 20,
        max_batch_agents=1024,
        credit=0,
        resume_seq=0,
        features=features,
    )
    session.receive_data(encode_frame(welcome), 0.0)
    while session.next_event() is not None:
        pass
    return session


def _altered(frame: RegistryIndex | RegistryRequest | RegistryChunk, **changes: Any) -> bytes:
    """``frame``'s payload with ``changes`` to its fields, as a lying peer would send it."""
    fields = msgpack.unpackb(encode_payload(frame))
    fields.update(changes)
    return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("frame", "changes", "says"),
    [
        (REGISTRY_FRAMES[0], {"modules": "counter"}, "'modules' must be an array"),
        (REGISTRY_FRAMES[0], {"modules": [["counter", "1.0.0"]]}, r"\[name, version, digest\]"),
        (REGISTRY_FRAMES[0], {"modules": [["c" * 65, "1.0.0", DIGEST]]}, "too long or empty"),
        (REGISTRY_FRAMES[0], {"modules": [["counter", "1.0.0", "sha256:AB"]]}, "digest"),
        (REGISTRY_FRAMES[0], {"deployments": [7]}, "must be a map"),
        (REGISTRY_FRAMES[1], {"length": 0}, "'length' must be 1.."),
        (REGISTRY_FRAMES[2], {"size": 5}, "inside its blob"),
    ],
)
def test_malformed_registry_frames_are_refused_by_the_decoder(
    frame: RegistryIndex | RegistryRequest | RegistryChunk, changes: dict[str, Any], says: str
) -> None:
    with pytest.raises(MalformedFrame, match=says):
        decode_payload(_altered(frame, **changes))


@pytest.mark.parametrize(
    "frame",
    [
        RegistryRequest("", "1.0.0", 0, 1024),
        RegistryRequest("counter", "1.0.0", 0, 0),
        RegistryChunk("counter", "1.0.0", b"{}", 8, 10, b"abcdef"),
        RegistryIndex((IndexEntry("counter", "1.0.0", "sha256:AB"),), ()),
    ],
)
def test_registry_frames_that_break_their_bounds_are_not_sent(
    frame: RegistryIndex | RegistryRequest | RegistryChunk,
) -> None:
    with pytest.raises(LocalProtocolError):
        encode_payload(frame)
