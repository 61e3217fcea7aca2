"""Replicating a registry to peer gateways, sans-I/O: what to fetch, which record wins.

Two registries converge by exchanging indexes (``docs/modules.md``,
"Replication between gateways"):

- **module versions** are immutable and content-addressed: a receiver fetches
  every ``name@version`` it lacks (:func:`missing`) in bounded chunks
  (:class:`ModuleTransfer`) and publishes it through the SAME admission as a
  local publish (signature, its own trust policy, digest and size, ABI);
  a version it holds with another digest is a conflict, never fetched;
- **deployment records** (one per module: stable version, previous version,
  rollout number and plan) carry a :class:`Stamp` ``(counter, origin)``; every
  change bumps the counter past the record's, and of two records the one with
  the greater stamp wins everywhere (:func:`wins`: last writer wins, ties broken
  by the origin's replica id, so that every gateway picks the same one).

No sockets, no clock, no SQLite here: the store applies what this decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

from .admission import MAX_MODULE_BYTES
from .errors import FetchError, ManifestError, ModuleTooLargeError, RolloutError
from .manifest import Manifest, parse_manifest
from .rollout import plan_from_json

__all__ = [
    "CHUNK_BYTES",
    "MAX_COUNTER",
    "DeploymentRecord",
    "ModuleRef",
    "ModuleTransfer",
    "Stamp",
    "missing",
    "wins",
]

CHUNK_BYTES: Final = 256 * 1024
"""Bytes asked for per REGISTRY_REQUEST."""
MAX_COUNTER: Final = 2**62
"""Largest stamp counter taken from a peer: far beyond any count of real changes, and far
enough below SQLite's 2**63 - 1 that every later local change can still count past it."""


class Stamp(NamedTuple):
    """Version of a deployment record; compared as a tuple (counter first)."""

    counter: int
    """0: never changed since the registry learnt about replication."""
    origin: str
    """Replica id of the registry that made the change (``modules.db``'s own id)."""


class ModuleRef(NamedTuple):
    """A module version as an index lists it."""

    name: str
    version: str
    digest: str


@dataclass(frozen=True)
class DeploymentRecord:
    """What the fleet runs of one module, as replicated."""

    name: str
    version: str
    previous: str | None
    rollout: int
    plan: str | None
    """The rollout under way (``plan_to_json``), None when none."""
    stamp: Stamp

    def versions(self) -> frozenset[str]:
        """Every version of the module the record names: a registry applies it only once
        it holds them all. Raises :class:`~.errors.RolloutError` for a plan that is not
        valid or is about another module, or a stamp counter above :data:`MAX_COUNTER`."""
        if not 0 <= self.stamp.counter <= MAX_COUNTER:
            raise RolloutError(
                f"the deployment record of {self.name} has the stamp counter "
                f"{self.stamp.counter}, above {MAX_COUNTER}"
            )
        names = {self.version} | ({self.previous} if self.previous else set())
        if self.plan is not None:
            plan = plan_from_json(self.plan)
            if plan.name != self.name:
                raise RolloutError(f"the rollout plan of {self.name} is about {plan.name}")
            names |= {plan.to_version} | ({plan.from_version} if plan.from_version else set())
        return frozenset(names)


def wins(remote: DeploymentRecord, local: DeploymentRecord | None) -> bool:
    """Whether ``remote`` replaces ``local`` (a greater stamp; no local record at all)."""
    return local is None or remote.stamp > local.stamp


def missing(
    remote: Iterable[ModuleRef], local: Mapping[tuple[str, str], str]
) -> tuple[list[ModuleRef], list[ModuleRef]]:
    """Of the versions a peer holds: those to fetch (absent here), and those in conflict
    (``name@version`` held here with another digest: never fetched, never replaced)."""
    wanted: list[ModuleRef] = []
    conflicts: list[ModuleRef] = []
    for ref in remote:
        held = local.get((ref.name, ref.version))
        if held is None:
            wanted.append(ref)
        elif held != ref.digest:
            conflicts.append(ref)
    return wanted, conflicts


class ModuleTransfer:
    """One module version fetched from a peer gateway, in memory (at most
    :data:`~.admission.MAX_MODULE_BYTES`), chunk after chunk.

    The peer is authenticated, not trusted: the first chunk's manifest must
    parse and name this ``name@version`` and digest, and its signed ``size``
    bounds the transfer; every later chunk must carry the same manifest bytes
    and start exactly where the bytes so far end. Anything else is a
    :class:`FetchError` (or :class:`ManifestError`, :class:`ModuleTooLargeError`)
    and nothing is kept. Signature, trust, digest and ABI are checked by the
    publish the complete transfer goes to, as for any publish.
    """

    def __init__(self, ref: ModuleRef, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.ref = ref
        self.chunk_bytes = chunk_bytes
        self.manifest_bytes: bytes | None = None
        self.manifest: Manifest | None = None
        self._data = bytearray()

    @property
    def received(self) -> int:
        return len(self._data)

    @property
    def complete(self) -> bool:
        return self.manifest is not None and len(self._data) == self.manifest.size

    def next_offset_length(self) -> tuple[int, int]:
        """Offset and length of the next chunk to ask for."""
        if self.manifest is None:
            return 0, self.chunk_bytes
        return len(self._data), min(self.chunk_bytes, self.manifest.size - len(self._data))

    def receive(self, manifest_bytes: bytes, offset: int, size: int, data: bytes) -> bool:
        """Take one chunk in; whether the blob is complete."""
        name = f"{self.ref.name}@{self.ref.version}"
        if self.manifest is None:
            manifest = parse_manifest(manifest_bytes)
            if (manifest.name, manifest.version, manifest.digest) != tuple(self.ref):
                raise ManifestError(
                    f"the peer sent the manifest of {manifest.ref} ({manifest.digest}) "
                    f"for {name} ({self.ref.digest})"
                )
            if manifest.size > MAX_MODULE_BYTES:
                raise ModuleTooLargeError(
                    f"{name} is {manifest.size} bytes; a registry takes at most {MAX_MODULE_BYTES}"
                )
            self.manifest, self.manifest_bytes = manifest, manifest_bytes
        elif manifest_bytes != self.manifest_bytes:
            raise FetchError(f"a chunk of {name} carries another manifest than the first")
        if size != self.manifest.size:
            raise FetchError(f"{name} is {self.manifest.size} bytes (signed), the peer says {size}")
        if offset != len(self._data) or not data or offset + len(data) > size:
            raise FetchError(
                f"a chunk of {name} at {offset} (+{len(data)}) does not follow the "
                f"{len(self._data)} bytes received"
            )
        self._data += data
        return self.complete

    def blob(self) -> bytes:
        """The bytes received (the whole blob once :attr:`complete`)."""
        return bytes(self._data)
