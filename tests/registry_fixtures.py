"""Modules, keys and manifests for the registry tests: real built modules, real keys."""

from __future__ import annotations

import subprocess
from dataclasses import replace

from edgeswarm.agents_wasm import module_path
from edgeswarm.cli.module_files import describe, signed_manifest
from edgeswarm.identity import KeyPair
from edgeswarm.registry import Manifest, blob_digest
from tests.conftest import edgeswarm_command

FLOCKING = module_path("flocking").read_bytes()
BOIDS = module_path("boids").read_bytes()
TRAPPING = module_path("hostile_trap").read_bytes()


def manifest_for(
    blob: bytes, key: KeyPair, *, name: str = "flocking", version: str = "1.0.0"
) -> Manifest:
    """``blob`` as ``name@version``, signed by ``key`` (its descriptor read by loading it)."""
    return signed_manifest(blob, name=name, version=version, key=key, label=name)


def unsigned_manifest_for(blob: bytes, key: KeyPair, *, name: str = "flocking") -> Manifest:
    """A manifest as ``sign`` would write it, minus the signature."""
    return Manifest(
        name=name,
        version="1.0.0",
        digest=blob_digest(blob),
        size=len(blob),
        abi_version=1,
        descriptor=describe(blob, name),
        publisher=key.public_key,
    )


def resigned(manifest: Manifest, key: KeyPair, **changes: object) -> Manifest:
    """``manifest`` with ``changes``, signed again by ``key`` (a consistent, signed lie)."""
    changed = replace(manifest, signature=None, **changes)  # type: ignore[arg-type]
    return changed.with_signature(key.sign(changed.canonical_bytes()))


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``edgeswarm ARGS`` as a process; with ``check``, a failure shows its stderr."""
    result = subprocess.run(
        edgeswarm_command(*args), capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args}: exit {result.returncode}: {result.stderr}")
    return result
