"""The module registry without sockets: manifests, signatures, trust, the store's refusals."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import rfc8785

from edgeswarm.identity import KeyPair, public_key_text
from edgeswarm.registry import (
    AbiMismatchError,
    DigestMismatchError,
    ManifestError,
    ModuleStore,
    RegistryStoreError,
    SignatureError,
    TrustPolicy,
    TrustRule,
    UnknownModuleError,
    UnsignedManifestError,
    UntrustedPublisherError,
    VersionConflictError,
    blob_digest,
    parse_manifest,
    sign_manifest,
    verify_manifest,
)
from tests.registry_fixtures import (
    BOIDS,
    FLOCKING,
    manifest_for,
    resigned,
    unsigned_manifest_for,
)

ACTOR = "alice"


@pytest.fixture(scope="module")
def publisher() -> KeyPair:
    return KeyPair.generate()


@pytest.fixture
def store(tmp_path: Path, publisher: KeyPair) -> Iterator[ModuleStore]:
    with ModuleStore(tmp_path / "modules.db") as opened:
        opened.trust(publisher.public_key, "flock*", actor=ACTOR)
        yield opened


def snapshot(store: ModuleStore) -> tuple[object, ...]:
    """Everything a refused publish must leave as it was."""
    db = sqlite3.connect(store.path)
    try:
        return tuple(
            db.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("blobs", "modules", "trust", "history")
        )
    finally:
        db.close()


# --- manifests and canonical bytes ------------------------------------------------


def test_manifest_round_trips_and_canonical_bytes_are_jcs(publisher: KeyPair) -> None:
    manifest = manifest_for(FLOCKING, publisher)
    assert parse_manifest(manifest.to_bytes()) == manifest
    doc = manifest.unsigned_document()
    # the documented recipe for other tools gives the same bytes as RFC 8785
    recipe = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert manifest.canonical_bytes() == recipe == rfc8785.dumps(doc)
    assert manifest.digest == blob_digest(FLOCKING)
    assert (manifest.descriptor.obs_dim, manifest.descriptor.state_dim) == (8, 2)
    assert doc["publisher"] == public_key_text(publisher.public_key)


def test_manifest_key_order_and_whitespace_do_not_change_the_signature(publisher: KeyPair) -> None:
    manifest = manifest_for(FLOCKING, publisher)
    pretty = json.dumps(dict(reversed(list(manifest.document().items()))), indent=2).encode()
    reread = parse_manifest(pretty)
    verify_manifest(reread)
    assert reread == manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema": "other"}, "schema"),
        ({"name": "Bad Name"}, "module name"),
        ({"version": "1.0"}, "semantic version"),
        ({"digest": "sha256:xyz"}, "digest"),
        ({"size": -1}, "size"),
        ({"abi_version": "1"}, "abi_version"),
        ({"publisher": "ed25519:AAAA"}, "publisher"),
        ({"descriptor": {"name": "x", "obs_dim": 8, "state_dim": 2}}, "act_dim"),
    ],
)
def test_malformed_manifests_are_refused_naming_the_field(
    publisher: KeyPair, change: dict[str, object], message: str
) -> None:
    doc = manifest_for(FLOCKING, publisher).document() | change
    with pytest.raises(ManifestError, match=message):
        parse_manifest(json.dumps(doc).encode())


def test_manifest_that_is_not_json_is_refused() -> None:
    with pytest.raises(ManifestError):
        parse_manifest(b"\xff not json")
    with pytest.raises(ManifestError):
        parse_manifest(b"[" * 100_000)


# --- signatures -----------------------------------------------------------------


def test_signature_verifies_and_any_change_breaks_it(publisher: KeyPair) -> None:
    manifest = manifest_for(FLOCKING, publisher)
    verify_manifest(manifest)
    for changed in (
        replace(manifest, version="1.0.1"),
        replace(manifest, digest=blob_digest(BOIDS)),
        replace(manifest, descriptor=replace(manifest.descriptor, state_dim=1)),
        replace(manifest, publisher=KeyPair.generate().public_key),
    ):
        with pytest.raises(SignatureError):
            verify_manifest(changed)


def test_signature_missing_is_refused_by_verify(publisher: KeyPair) -> None:
    with pytest.raises(UnsignedManifestError):
        verify_manifest(unsigned_manifest_for(FLOCKING, publisher))


def test_sign_manifest_makes_the_key_the_publisher(publisher: KeyPair) -> None:
    other = KeyPair.generate()
    resigned_by_other = sign_manifest(manifest_for(FLOCKING, publisher), other)
    verify_manifest(resigned_by_other)
    assert resigned_by_other.publisher == other.public_key


# --- trust policy ---------------------------------------------------------------


def test_trust_policy_matches_key_and_name_pattern(publisher: KeyPair) -> None:
    other = KeyPair.generate().public_key
    policy = TrustPolicy.of([TrustRule(publisher.public_key, "team-a.*")])
    assert policy.allows(publisher.public_key, "team-a.flock")
    assert not policy.allows(publisher.public_key, "team-b.flock")
    assert not policy.allows(other, "team-a.flock")
    assert not TrustPolicy().allows(publisher.public_key, "anything")
    with pytest.raises(UntrustedPublisherError, match=r"team-b\.flock"):
        policy.check(publisher.public_key, "team-b.flock")


# --- the store: publish, and every refusal changes nothing ----------------------


def test_publish_stores_blob_manifest_and_history(store: ModuleStore, publisher: KeyPair) -> None:
    manifest = manifest_for(FLOCKING, publisher)
    published = store.publish(manifest.to_bytes(), FLOCKING, actor=ACTOR)
    assert published.manifest == manifest
    assert store.blob(manifest.digest) == FLOCKING
    assert store.module("flocking").manifest.version == "1.0.0"
    verify_manifest(parse_manifest(published.manifest_bytes))
    entry = store.history("flocking")[-1]
    assert (entry.actor, entry.action, entry.version) == (ACTOR, "publish", "1.0.0")
    assert entry.detail["digest"] == manifest.digest
    # publishing the very same bytes again is a no-op
    before = snapshot(store)
    store.publish(manifest.to_bytes(), FLOCKING, actor="bob")
    assert snapshot(store) == before


def test_versions_sort_by_semver(store: ModuleStore, publisher: KeyPair) -> None:
    for version in ("1.10.0", "1.2.0", "1.9.0-rc.1"):
        manifest = manifest_for(FLOCKING, publisher, version=version)
        store.publish(manifest.to_bytes(), FLOCKING, actor=ACTOR)
    assert [m.manifest.version for m in store.versions("flocking")] == [
        "1.2.0",
        "1.9.0-rc.1",
        "1.10.0",
    ]
    assert store.module("flocking").manifest.version == "1.10.0"
    with pytest.raises(UnknownModuleError):
        store.module("flocking", "9.9.9")


def test_tampered_blob_is_refused_and_nothing_changes(
    store: ModuleStore, publisher: KeyPair
) -> None:
    manifest = manifest_for(FLOCKING, publisher)
    tampered = bytearray(FLOCKING)
    tampered[-1] ^= 0x01
    before = snapshot(store)
    with pytest.raises(DigestMismatchError, match="altered"):
        store.publish(manifest.to_bytes(), bytes(tampered), actor=ACTOR)
    assert snapshot(store) == before


def test_tampered_manifest_fails_its_signature_and_nothing_changes(
    store: ModuleStore, publisher: KeyPair
) -> None:
    doc = manifest_for(FLOCKING, publisher).document()
    doc["descriptor"]["state_dim"] = 1  # a lie about the state layout
    before = snapshot(store)
    with pytest.raises(SignatureError):
        store.publish(json.dumps(doc).encode(), FLOCKING, actor=ACTOR)
    assert snapshot(store) == before


def test_signature_missing_unsigned_manifest_is_refused_and_nothing_changes(
    store: ModuleStore, publisher: KeyPair
) -> None:
    before = snapshot(store)
    with pytest.raises(UnsignedManifestError):
        store.publish(unsigned_manifest_for(FLOCKING, publisher).to_bytes(), FLOCKING, actor=ACTOR)
    assert snapshot(store) == before


def test_signature_by_untrusted_key_is_refused_and_nothing_changes(store: ModuleStore) -> None:
    stranger = KeyPair.generate()
    before = snapshot(store)
    with pytest.raises(UntrustedPublisherError):
        store.publish(manifest_for(FLOCKING, stranger).to_bytes(), FLOCKING, actor=ACTOR)
    assert snapshot(store) == before


def test_signature_by_trusted_key_outside_its_names_is_refused(
    store: ModuleStore, publisher: KeyPair
) -> None:
    before = snapshot(store)
    with pytest.raises(UntrustedPublisherError):
        store.publish(manifest_for(BOIDS, publisher, name="boids").to_bytes(), BOIDS, actor=ACTOR)
    assert snapshot(store) == before


def test_tamper_wrong_abi_version_in_a_signed_manifest_is_refused(
    store: ModuleStore, publisher: KeyPair
) -> None:
    lie = resigned(manifest_for(FLOCKING, publisher), publisher, abi_version=2)
    before = snapshot(store)
    with pytest.raises(AbiMismatchError, match="ABI 2"):
        store.publish(lie.to_bytes(), FLOCKING, actor=ACTOR)
    assert snapshot(store) == before


def test_tamper_wrong_abi_blob_without_the_exports_is_refused(
    store: ModuleStore, publisher: KeyPair
) -> None:
    import wasmtime

    no_step = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1))'))
    lie = resigned(
        manifest_for(FLOCKING, publisher),
        publisher,
        digest=blob_digest(no_step),
        size=len(no_step),
    )
    before = snapshot(store)
    with pytest.raises(AbiMismatchError, match="es_step"):
        store.publish(lie.to_bytes(), no_step, actor=ACTOR)
    assert snapshot(store) == before


def test_tamper_wrong_abi_module_is_refused_at_sign(publisher: KeyPair) -> None:
    from edgeswarm.agents_wasm import module_path

    with pytest.raises(AbiMismatchError, match="99"):
        manifest_for(module_path("hostile_wrong_abi").read_bytes(), publisher)


def test_same_version_other_bytes_is_a_conflict(store: ModuleStore, publisher: KeyPair) -> None:
    store.trust(publisher.public_key, "*", actor=ACTOR)
    store.publish(manifest_for(FLOCKING, publisher).to_bytes(), FLOCKING, actor=ACTOR)
    before = snapshot(store)
    with pytest.raises(VersionConflictError, match="new version"):
        store.publish(manifest_for(BOIDS, publisher).to_bytes(), BOIDS, actor=ACTOR)
    assert snapshot(store) == before


def test_damaged_blob_is_never_served(store: ModuleStore, publisher: KeyPair) -> None:
    manifest = manifest_for(FLOCKING, publisher)
    store.publish(manifest.to_bytes(), FLOCKING, actor=ACTOR)
    db = sqlite3.connect(store.path)
    db.execute("UPDATE blobs SET data = ? WHERE digest = ?", (BOIDS, manifest.digest))
    db.commit()
    db.close()
    with pytest.raises(RegistryStoreError, match="damaged"):
        store.blob(manifest.digest)


def test_registry_survives_reopen_and_refuses_a_foreign_file(
    tmp_path: Path, publisher: KeyPair
) -> None:
    path = tmp_path / "modules.db"
    with ModuleStore(path) as first:
        first.trust(publisher.public_key, "*", actor=ACTOR)
        first.publish(manifest_for(FLOCKING, publisher).to_bytes(), FLOCKING, actor=ACTOR)
    with ModuleStore(path) as again:
        assert again.blob(blob_digest(FLOCKING)) == FLOCKING
        assert [e.action for e in again.history()] == ["trust", "publish"]
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"not a database at all" * 100)
    with pytest.raises(RegistryStoreError, match=r"foreign\.db"):
        ModuleStore(foreign)


def test_tampered_oversized_blob_is_refused_before_it_is_hashed_or_compiled(
    store: ModuleStore, publisher: KeyPair
) -> None:
    from edgeswarm.registry import ModuleTooLargeError
    from edgeswarm.registry.admission import MAX_MODULE_BYTES

    huge = FLOCKING + bytes(MAX_MODULE_BYTES)  # a valid module's bytes, padded
    lie = resigned(
        manifest_for(FLOCKING, publisher), publisher, digest=blob_digest(huge), size=len(huge)
    )
    before = snapshot(store)
    with pytest.raises(ModuleTooLargeError, match="at most"):
        store.publish(lie.to_bytes(), huge, actor=ACTOR)
    assert snapshot(store) == before


# --- deployments: what the fleet runs, rollouts and rollbacks, with who did them --


def test_rollback_and_rollouts_are_recorded_with_who_did_them(
    store: ModuleStore, publisher: KeyPair
) -> None:
    from edgeswarm.registry import RolloutError, RolloutPhase, RolloutPlan

    for version in ("1.0.0", "2.0.0"):
        manifest = manifest_for(FLOCKING, publisher, version=version)
        store.publish(manifest.to_bytes(), FLOCKING, actor=ACTOR)

    def plan(from_version: str, to_version: str) -> RolloutPlan:
        return RolloutPlan(name="flocking", from_version=from_version, to_version=to_version)

    with pytest.raises(UnknownModuleError):
        store.start_rollout(plan("0.0.0", "9.9.9"), actor="ops")
    first = store.start_rollout(plan("0.0.0", "1.0.0"), actor="ops")
    assert (first.version, first.plan) == ("1.0.0", None)  # the first version is deployed
    with pytest.raises(RolloutError, match=r"runs 1\.0\.0"):
        store.start_rollout(plan("0.5.0", "2.0.0"), actor="ops")
    under_way = store.start_rollout(plan("1.0.0", "2.0.0"), actor="ops")
    assert under_way.plan is not None
    with pytest.raises(RolloutError, match="under way"):
        store.start_rollout(plan("1.0.0", "2.0.0"), actor="ops")
    assert not store.end_rollout(
        "flocking", under_way.rollout - 1, RolloutPhase.COMPLETE, actor="rollout", detail="stale"
    )
    assert store.end_rollout(
        "flocking", under_way.rollout, RolloutPhase.COMPLETE, actor="rollout", detail="held"
    )
    done = store.deployment("flocking")
    assert done is not None
    assert (done.version, done.previous, done.plan) == ("2.0.0", "1.0.0", None)
    back = store.rollback("flocking", actor="bob")
    assert (back.version, back.previous) == ("1.0.0", None)
    with pytest.raises(RolloutError, match="no previous version"):
        store.rollback("flocking", actor="bob")
    assert [(h.action, h.actor) for h in store.history("flocking")][-4:] == [
        ("deploy", "ops"),
        ("rollout", "ops"),
        ("complete", "rollout"),
        ("rollback", "bob"),
    ]
