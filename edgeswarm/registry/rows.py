"""The rows ``modules.db`` gives back: a published module, a history entry, a deployment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeswarm.identity import fingerprint, public_key_text

from .manifest import Manifest
from .rollout import RolloutPlan

__all__ = ["Deployment", "HistoryEntry", "PublishedModule"]


@dataclass(frozen=True)
class PublishedModule:
    """A ``modules`` row: a manifest as published."""

    manifest: Manifest
    manifest_bytes: bytes
    """The document as published (what edges and OCI pulls verify)."""
    published_at: float
    published_by: str

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "name": m.name,
            "version": m.version,
            "digest": m.digest,
            "size": m.size,
            "abi_version": m.abi_version,
            "state_dim": m.descriptor.state_dim,
            "publisher": public_key_text(m.publisher),
            "publisher_fingerprint": fingerprint(m.publisher),
            "published_at": self.published_at,
            "published_by": self.published_by,
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One change to the registry, with who made it."""

    seq: int
    at: float
    actor: str
    action: str
    name: str
    version: str
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "name": self.name,
            "version": self.version,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class Deployment:
    """What the fleet runs of one module."""

    name: str
    version: str
    """The stable version: every agent outside a rollout runs it."""
    previous: str | None
    """The version before the last completed rollout (what ``rollback`` restores)."""
    rollout: int
    """Number of the rollout under way or the last one (edges name it in reports)."""
    plan: RolloutPlan | None
    """The rollout under way, if any."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "previous": self.previous,
            "rollout": self.rollout,
            "to_version": self.plan.to_version if self.plan else None,
        }
