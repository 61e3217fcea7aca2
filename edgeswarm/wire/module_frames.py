"""Frames of module distribution (feature ``modules``, ``docs/protocol.md`` section 14).

Kept beside :mod:`.frames`, which names them in ``Frame`` and ``FRAME_TYPES``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BlobChunk", "BlobRequest", "ModuleAssign", "ModuleAssignment", "ModuleReport"]


@dataclass(frozen=True)
class ModuleAssignment:
    """Which versions of one module an edge's agents run (an entry of MODULE_ASSIGN)."""

    module: str
    """Registry name of the module (1-64 characters)."""
    base: bytes
    """Signed manifest document of the version agents run outside the rollout."""
    target: bytes | None = None
    """Signed manifest of the version being rolled out; None when there is no rollout."""
    share: float = 0.0
    """Agents whose share point is below this run ``target`` (0..1)."""
    labels: tuple[str, ...] = ()
    """Only edges with one of these labels take part in the rollout; empty: all."""
    rollout: int = 0
    """Id of the rollout (0: none); MODULE_REPORT names it."""


@dataclass(frozen=True)
class ModuleAssign:
    """MODULE_ASSIGN: the modules the receiving edge's agents run now (replaces earlier ones)."""

    assignments: tuple[ModuleAssignment, ...]


@dataclass(frozen=True)
class ModuleReport:
    """MODULE_REPORT: how the agents on a rolled-out version fared since the last report."""

    module: str
    version: str
    rollout: int
    """The rollout this report is about."""
    ticks: int
    """Ticks covered by this report."""
    agent_ticks: int
    """Agents on ``version`` times ticks."""
    faults: int
    """Agent-ticks lost to faults (traps, fuel, deadlines, bad actions, quarantine)."""


@dataclass(frozen=True)
class BlobRequest:
    """BLOB_REQUEST: ``length`` bytes of blob ``digest`` from ``offset`` (resumable fetch)."""

    digest: str
    """``sha256:<64 hex>``."""
    offset: int
    length: int


@dataclass(frozen=True)
class BlobChunk:
    """BLOB_CHUNK: bytes of a blob, the answer to one BLOB_REQUEST."""

    digest: str
    offset: int
    size: int
    """Length of the whole blob."""
    data: bytes
