"""Push and pull modules to and from a real OCI registry (CNCF distribution on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import oras.client
import pytest

from edgeswarm.identity import KeyPair
from edgeswarm.registry import (
    DigestMismatchError,
    SignatureError,
    blob_digest,
    oci,
    parse_manifest,
    verify_manifest,
)
from tests.oci_registry import OciRegistry, registry_binary, start_registry
from tests.registry_fixtures import BOIDS, FLOCKING, manifest_for, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OciRegistry]:
    binary = registry_binary()
    if binary is None:
        pytest.skip("docker-registry is not installed (scripts/test installs it as root)")
    running = start_registry(binary, tmp_path_factory.mktemp("oci"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def publisher() -> KeyPair:
    return KeyPair.generate()


def push_raw(
    registry: OciRegistry, reference: str, wasm: bytes, annotation: str, tmp_path: Path
) -> None:
    """Push an artifact of our layout with any layer and annotation (what a forger can do)."""
    layer = tmp_path / "module.wasm"
    layer.write_bytes(wasm)
    config = tmp_path / "config.json"
    config.write_text("{}")
    oras.client.OrasClient(hostname=registry.host, insecure=True).push(
        target=reference,
        files=[f"{layer}:{oci.LAYER_MEDIA_TYPE}"],
        manifest_config=f"{config}:{oci.CONFIG_MEDIA_TYPE}",
        manifest_annotations={oci.MANIFEST_ANNOTATION: annotation},
        disable_path_validation=True,
        quiet=True,
    )


def test_push_pull_gives_same_digest_and_a_verifiable_signature(
    registry: OciRegistry, publisher: KeyPair, tmp_path: Path
) -> None:
    manifest = manifest_for(FLOCKING, publisher, version="1.0.0")
    wasm = tmp_path / "flocking.wasm"
    wasm.write_bytes(FLOCKING)
    wasm.with_suffix(".manifest.json").write_bytes(manifest.to_bytes())
    reference = f"{registry.host}/agents/flocking:1.0.0"
    pushed = json.loads(
        run_cli("agents", "push", str(wasm), reference, "--insecure", "--json").stdout
    )
    assert pushed["digest"] == manifest.digest
    assert pushed["oci_manifest"].startswith("sha256:")

    # what the registry holds is a Wasm OCI artifact whose one layer is the module itself
    raw = oras.client.OrasClient(hostname=registry.host, insecure=True).get_manifest(reference)
    assert raw["config"]["mediaType"] == "application/vnd.wasm.config.v0+json"
    assert [layer["mediaType"] for layer in raw["layers"]] == ["application/wasm"]
    assert raw["layers"][0]["digest"] == manifest.digest

    out = tmp_path / "pulled"
    pulled = json.loads(
        run_cli("agents", "pull", reference, "--insecure", "--out", str(out), "--json").stdout
    )
    assert pulled["digest"] == manifest.digest
    assert pulled["signature"] == "verified"
    blob = Path(pulled["module"]).read_bytes()
    assert blob == FLOCKING
    assert blob_digest(blob) == manifest.digest
    again = parse_manifest(Path(pulled["manifest"]).read_bytes())
    verify_manifest(again)
    assert again == manifest


def test_pull_refuses_an_artifact_whose_signature_fails(
    registry: OciRegistry, publisher: KeyPair, tmp_path: Path
) -> None:
    manifest = manifest_for(FLOCKING, publisher, version="1.0.1")
    reference = f"{registry.host}/agents/flocking:forged"
    document = manifest.document()
    document["descriptor"]["state_dim"] = 0  # changed after signing
    push_raw(registry, reference, FLOCKING, json.dumps(document), tmp_path)
    with pytest.raises(SignatureError):
        oci.pull(reference, insecure=True)
    result = run_cli("agents", "pull", reference, "--insecure", "--out", str(tmp_path), check=False)
    assert result.returncode == 3
    assert "signature" in result.stderr
    assert not (tmp_path / "flocking-1.0.1.wasm").exists()


def test_pull_refuses_a_tampered_layer_signature_intact(
    registry: OciRegistry, publisher: KeyPair, tmp_path: Path
) -> None:
    manifest = manifest_for(FLOCKING, publisher, version="1.0.2")
    reference = f"{registry.host}/agents/flocking:tampered"
    # a validly signed manifest, another module in the layer
    push_raw(registry, reference, BOIDS, manifest.to_bytes().decode(), tmp_path)
    with pytest.raises(DigestMismatchError):
        oci.pull(reference, insecure=True)


def test_push_to_an_unreachable_registry_is_one_line(publisher: KeyPair, tmp_path: Path) -> None:
    from tests.oci_registry import free_port

    wasm = tmp_path / "flocking.wasm"
    wasm.write_bytes(FLOCKING)
    wasm.with_suffix(".manifest.json").write_bytes(manifest_for(FLOCKING, publisher).to_bytes())
    reference = f"127.0.0.1:{free_port()}/agents/flocking:1.0.0"
    result = run_cli("agents", "push", str(wasm), reference, "--insecure", "--json", check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: push ")
    assert len(result.stderr.strip().splitlines()) == 1
