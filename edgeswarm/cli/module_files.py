"""What the module commands read from a ``.wasm`` file: its descriptor, its manifest.

The descriptor is read by loading the module in the edge's own sandbox
(:class:`~edgeswarm.edge.policy.WasmPolicy`: imports, exports,
``es_abi_version() == 1``, the descriptor's rules, ``es_init``), so a module
that ``agents build`` or ``agents sign`` accepts is one an edge loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeswarm.agents_wasm.abi_v1 import ABI_VERSION
from edgeswarm.identity import KeyPair
from edgeswarm.registry import (
    AbiMismatchError,
    Manifest,
    ModuleDescriptor,
    blob_digest,
    parse_manifest,
    sign_manifest,
)
from edgeswarm.registry.manifest import check_version

if TYPE_CHECKING:
    import wasmtime

DESCRIBE_DEADLINE_S = 5.0
"""Wall-clock limit of each call into a module while it is described."""


def describe(blob: bytes, label: str) -> ModuleDescriptor:
    """The descriptor of the module ``blob`` (:class:`AbiMismatchError` if it is not ABI v1)."""
    from edgeswarm.edge.policy import PolicyError, WasmPolicy

    try:
        with WasmPolicy(blob, deadline_s=DESCRIBE_DEADLINE_S) as policy:
            found = policy.descriptor
    except PolicyError as exc:
        raise AbiMismatchError(f"{label} is not an ABI v{ABI_VERSION} module: {exc}") from exc
    keys = {
        "counters": tuple(sorted(found.counters)),
        "sets": tuple(sorted(found.sets)),
        "flags": tuple(sorted(found.flags)),
        "models": tuple(sorted(found.models)),
        "heavy": tuple(sorted(found.heavy)),
    }
    return ModuleDescriptor(
        name=found.name,
        obs_dim=found.obs_dim,
        state_dim=found.state_dim,
        act_dim=found.act_dim,
        keys=keys,
    )


def compile_bounded(blob: bytes, label: str) -> wasmtime.Module:
    """Compile ``blob`` as an edge does: size and function count checked first, then a
    child process under the edge's default compile limits (``CompileLimits``: memory,
    time). The registry's ABI check at publish uses it; a refusal is
    :class:`AbiMismatchError` (exit 3) naming the limit."""
    from edgeswarm.edge.policy import PolicyError
    from edgeswarm.edge.policy.module_cache import ModuleCache

    try:
        return ModuleCache().load(blob, name=label).module
    except PolicyError as exc:
        raise AbiMismatchError(f"{label} does not compile as an edge compiles it: {exc}") from exc


def signed_manifest(blob: bytes, *, name: str, version: str, key: KeyPair, label: str) -> Manifest:
    """The manifest of ``blob`` as ``name@version``, signed by ``key``."""
    unsigned = Manifest(
        name=name,
        version=check_version(version),
        digest=blob_digest(blob),
        size=len(blob),
        abi_version=ABI_VERSION,
        descriptor=describe(blob, label),
        publisher=key.public_key,
    )
    return parse_manifest(sign_manifest(unsigned, key).to_bytes())  # every field checked


def manifest_path(module: Path) -> Path:
    """Where ``agents sign`` puts the manifest of ``module`` by default: NAME.manifest.json."""
    return module.with_suffix(".manifest.json")
