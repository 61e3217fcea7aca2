"""Errors of the module registry, one tree (drawn in ``edgeswarm.errors`` too)::

    RegistryError                   edgeswarm.registry.errors
    ├── ManifestError               a manifest document is malformed (a field, its type, its form)
    ├── ModuleRefusedError          a publish was refused: nothing was stored or changed
    │   ├── UnsignedManifestError   the manifest carries no signature
    │   ├── SignatureError          the signature does not verify over the canonical bytes
    │   ├── UntrustedPublisherError the trust policy does not let this key publish this name
    │   ├── DigestMismatchError     the blob is not the one the manifest names (tampered)
    │   ├── ModuleTooLargeError     the blob is above the registry's size limit
    │   ├── AbiMismatchError        the manifest or the blob is not ABI v1
    │   └── VersionConflictError    name@version is already published with other bytes
    ├── UnknownModuleError          no such module, version or blob
    ├── RegistryStoreError          ``modules.db`` cannot be opened, is damaged, or a blob
    │                               read back does not match its digest
    ├── RolloutError                a rollout plan is invalid or cannot start
    ├── FetchError                  a chunk of a blob being fetched does not fit (the sender)
    └── OciError                    an OCI registry refused or failed a push or a pull

Who caused it: the publisher or their files (``ManifestError``,
``ModuleRefusedError``: the one publish is refused, the registry keeps
serving), the operator (``UnknownModuleError``, ``RolloutError``), the disk
(``RegistryStoreError``) or a remote registry (``OciError``).
"""

from __future__ import annotations

from edgeswarm.errors import EdgeswarmError

__all__ = [
    "AbiMismatchError",
    "DigestMismatchError",
    "FetchError",
    "ManifestError",
    "ModuleRefusedError",
    "ModuleTooLargeError",
    "OciError",
    "RegistryError",
    "RegistryStoreError",
    "RolloutError",
    "SignatureError",
    "UnknownModuleError",
    "UnsignedManifestError",
    "UntrustedPublisherError",
    "VersionConflictError",
]


class RegistryError(EdgeswarmError):
    """Base of the module registry's errors."""


class ManifestError(RegistryError):
    """A manifest document is malformed: not JSON, a missing or ill-typed field, a bad form."""


class ModuleRefusedError(RegistryError):
    """A publish was refused; nothing was stored or changed."""


class UnsignedManifestError(ModuleRefusedError):
    """The manifest has no signature: sign it first (``edgeswarm agents sign``)."""


class SignatureError(ModuleRefusedError):
    """The manifest's signature does not verify over its canonical bytes and publisher key."""


class UntrustedPublisherError(ModuleRefusedError):
    """The trust policy does not let the manifest's publisher key publish its name."""


class DigestMismatchError(ModuleRefusedError):
    """The blob's sha256 or size is not the manifest's: the blob or the manifest was altered."""


class ModuleTooLargeError(ModuleRefusedError):
    """The blob is larger than the registry takes (:data:`.admission.MAX_MODULE_BYTES`)."""


class AbiMismatchError(ModuleRefusedError):
    """The manifest names another ABI version, or the blob lacks the ABI v1 exports."""


class VersionConflictError(ModuleRefusedError):
    """``name@version`` is already published with another digest; publish a new version."""


class UnknownModuleError(RegistryError):
    """No module, version or blob of that name or digest."""


class RegistryStoreError(RegistryError):
    """``modules.db`` cannot be opened or written, or a stored blob fails its digest."""


class RolloutError(RegistryError):
    """A rollout plan is invalid (shares, stages, threshold) or cannot start."""


class FetchError(RegistryError):
    """A chunk that does not fit the fetch (offset, length, digest): the sender misbehaved."""


class OciError(RegistryError):
    """An OCI registry refused or failed a push or a pull, or the artifact is not a module."""
