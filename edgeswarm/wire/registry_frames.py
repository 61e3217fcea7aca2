"""Frames of module registry replication between gateways (feature ``registry``,
``docs/protocol.md`` section 15).

Kept beside :mod:`.frames`, which names them in ``Frame`` and ``FRAME_TYPES``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DeploymentEntry",
    "IndexEntry",
    "RegistryChunk",
    "RegistryIndex",
    "RegistryRequest",
]


@dataclass(frozen=True)
class IndexEntry:
    """A module version the sender holds."""

    name: str
    version: str
    digest: str
    """``sha256:<64 hex>`` of its blob."""


@dataclass(frozen=True)
class DeploymentEntry:
    """The sender's deployment record of one module, with its stamp."""

    name: str
    version: str
    """The stable version."""
    previous: str | None
    """What ``rollback`` restores; None when nothing."""
    rollout: int
    """Number of the rollout under way or the last one."""
    plan: str | None
    """The rollout under way as JSON (``registry.rollout.plan_to_json``); None when none."""
    counter: int
    """Stamp, first part: bumped by every change (0..2**63-1)."""
    origin: str
    """Stamp, second part: the replica id of the registry that made the change."""


@dataclass(frozen=True)
class RegistryIndex:
    """REGISTRY_INDEX: everything the sender's registry holds (modules and deployments)."""

    modules: tuple[IndexEntry, ...]
    deployments: tuple[DeploymentEntry, ...]


@dataclass(frozen=True)
class RegistryRequest:
    """REGISTRY_REQUEST: ``length`` bytes of ``name@version``'s blob from ``offset``."""

    name: str
    version: str
    offset: int
    length: int


@dataclass(frozen=True)
class RegistryChunk:
    """REGISTRY_CHUNK: the signed manifest of ``name@version`` and bytes of its blob."""

    name: str
    version: str
    manifest: bytes
    """The signed manifest document as the sender stores it."""
    offset: int
    size: int
    """Length of the whole blob."""
    data: bytes
