"""``edgeswarm agents``: from C source to a published module, as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.agents_wasm import module_path
from edgeswarm.agents_wasm.build import SOURCE_DIR, ziglang_problem
from tests.registry_fixtures import run_cli

pytestmark = pytest.mark.integration


cli = run_cli


def cli_json(*args: str) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def trusted_setup(tmp_path: Path, public_key: str, names: str) -> tuple[Path, Path]:
    """A gateway data directory trusting ``public_key`` for ``names``, and flocking.wasm."""
    data_dir = tmp_path / "gateway"
    wasm = tmp_path / "flocking.wasm"
    wasm.write_bytes(module_path("flocking").read_bytes())
    trust = ("agents", "trust", "add", "--public-key", public_key, "--names", names)
    cli(*trust, "--data-dir", str(data_dir), "--actor", "ops")
    return data_dir, wasm


@pytest.fixture
def publisher_key(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "publisher.key"
    return key, cli_json("keys", "init", "--key", str(key))["public_key"]


@pytest.mark.skipif(ziglang_problem() is not None, reason=str(ziglang_problem()))
def test_build_compiles_c_reproducibly_and_checks_the_abi(tmp_path: Path) -> None:
    out = tmp_path / "flocking.wasm"
    built = cli_json("agents", "build", str(SOURCE_DIR / "flocking.c"), "--out", str(out))
    assert out.read_bytes() == module_path("flocking").read_bytes()
    assert built["descriptor"]["state_dim"] == 2
    refused = cli(
        "agents",
        "build",
        str(SOURCE_DIR / "hostile_wrong_abi.c"),
        "--out",
        str(tmp_path / "x"),
        check=False,
    )
    assert refused.returncode == 3  # refused for good
    assert "not an ABI v1 module" in refused.stderr
    assert "99" in refused.stderr
    assert not (tmp_path / "x").exists()


def test_sign_publish_list_history(tmp_path: Path, publisher_key: tuple[Path, str]) -> None:
    key, public_key = publisher_key
    data_dir, wasm = trusted_setup(tmp_path, public_key, "flock*")
    signed = cli_json(
        "agents", "sign", str(wasm), "--name", "flocking", "--version", "1.0.0", "--key", str(key)
    )
    assert signed["publisher"] == public_key
    published = cli_json(
        "agents", "publish", str(wasm), "--data-dir", str(data_dir), "--actor", "alice"
    )
    assert (published["name"], published["version"]) == ("flocking", "1.0.0")
    assert published["published_by"] == "alice"
    listed = cli_json("agents", "modules", "--data-dir", str(data_dir))
    assert [(m["name"], m["version"], m["digest"]) for m in listed] == [
        ("flocking", "1.0.0", signed["digest"])
    ]
    history = cli_json("agents", "history", "flocking", "--data-dir", str(data_dir))
    assert [(h["action"], h["actor"]) for h in history] == [("publish", "alice")]
    assert "flocking" in cli("agents", "modules", "--data-dir", str(data_dir)).stdout


def test_tampered_module_publish_is_refused_by_the_cli_and_nothing_changes(
    tmp_path: Path, publisher_key: tuple[Path, str]
) -> None:
    key, public_key = publisher_key
    data_dir, wasm = trusted_setup(tmp_path, public_key, "*")
    cli("agents", "sign", str(wasm), "--name", "flocking", "--version", "1.0.0", "--key", str(key))
    wasm.write_bytes(module_path("boids").read_bytes())  # swapped after signing
    before = cli_json("agents", "history", "--data-dir", str(data_dir))
    refused = cli("agents", "publish", str(wasm), "--data-dir", str(data_dir), check=False)
    assert refused.returncode == 3
    assert refused.stderr.startswith("error: publish ")
    assert "altered" in refused.stderr
    assert cli_json("agents", "modules", "--data-dir", str(data_dir)) == []
    assert cli_json("agents", "history", "--data-dir", str(data_dir)) == before


def test_signature_missing_or_untrusted_publishes_are_refused_by_the_cli(
    tmp_path: Path, publisher_key: tuple[Path, str]
) -> None:
    key, _ = publisher_key
    data_dir = tmp_path / "gateway"
    wasm = tmp_path / "flocking.wasm"
    wasm.write_bytes(module_path("flocking").read_bytes())
    cli("agents", "sign", str(wasm), "--name", "flocking", "--version", "1.0.0", "--key", str(key))
    untrusted = cli("agents", "publish", str(wasm), "--data-dir", str(data_dir), check=False)
    assert untrusted.returncode == 3
    assert "may not publish 'flocking'" in untrusted.stderr
    manifest = wasm.with_suffix(".manifest.json")
    doc = json.loads(manifest.read_bytes())
    del doc["signature"]
    manifest.write_text(json.dumps(doc))
    unsigned = cli("agents", "publish", str(wasm), "--data-dir", str(data_dir), check=False)
    assert unsigned.returncode == 3
    assert "not signed" in unsigned.stderr
    assert cli_json("agents", "modules", "--data-dir", str(data_dir)) == []


def test_tamper_a_compile_bomb_publish_is_refused_under_the_edge_compile_limits(
    tmp_path: Path, publisher_key: tuple[Path, str]
) -> None:
    """The ABI check at publish compiles as an edge does (function count, then a child
    process under the compile limits), not in the publishing process."""
    from edgeswarm.identity import KeyPair
    from edgeswarm.registry import Manifest, ModuleDescriptor, blob_digest
    from tests.hostile_modules import compile_bomb

    key, public_key = publisher_key
    data_dir, _ = trusted_setup(tmp_path, public_key, "*")
    bomb = compile_bomb(300_000)  # 3 MB: under the registry's 8 MiB cap
    wasm = tmp_path / "bomb.wasm"
    wasm.write_bytes(bomb)
    unsigned = Manifest(
        name="bomb",
        version="1.0.0",
        digest=blob_digest(bomb),
        size=len(bomb),
        abi_version=1,
        descriptor=ModuleDescriptor(name="bomb", obs_dim=8, state_dim=2, act_dim=2),
        publisher=KeyPair.load(key).public_key,
    )
    pair = KeyPair.load(key)
    signed = unsigned.with_signature(pair.sign(unsigned.canonical_bytes()))
    (tmp_path / "bomb.manifest.json").write_bytes(signed.to_bytes())
    refused = cli("agents", "publish", str(wasm), "--data-dir", str(data_dir), check=False)
    assert refused.returncode == 3
    assert "does not compile as an edge compiles it" in refused.stderr
    assert "--module-max-functions" in refused.stderr
    assert cli_json("agents", "modules", "--data-dir", str(data_dir)) == []
