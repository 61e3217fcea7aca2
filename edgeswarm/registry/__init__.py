"""The module registry: signed, content-addressed Wasm agent modules and their rollouts.

- :mod:`.manifest`: the manifest and its canonical bytes (RFC 8785), ``docs/modules.md``;
- :mod:`.signing`: ed25519 signatures by publisher keys (the same kind as peer keys);
- :mod:`.trust`: which publisher keys may publish which names;
- :mod:`.admission`: every check a publish passes before anything is written (pure);
- :mod:`.abi_check`: the blob's exports against ABI v1, nothing run;
- :mod:`.store`: ``modules.db``: blobs, manifests, trust rules, history (:mod:`.rows`);
- :mod:`.replica` and :mod:`.stamps`: replication to peer gateways (sans-I/O, and its SQL);
- :mod:`.fetch`: a blob fetched in chunks by digest, resumable, verified (sans-I/O + a file);
- :mod:`.rollout` and :mod:`.share`: rollouts, sans-I/O (shares, stages, automatic rollback);
- :mod:`.oci`: push and pull as Wasm OCI artifacts (ORAS).
"""

from __future__ import annotations

from .admission import admit, check_blob
from .errors import (
    AbiMismatchError,
    DigestMismatchError,
    FetchError,
    ManifestError,
    ModuleRefusedError,
    ModuleTooLargeError,
    OciError,
    RegistryError,
    RegistryStoreError,
    RolloutError,
    SignatureError,
    UnknownModuleError,
    UnsignedManifestError,
    UntrustedPublisherError,
    VersionConflictError,
)
from .manifest import Manifest, ModuleDescriptor, blob_digest, parse_manifest
from .rollout import Rollout, RolloutEvent, RolloutPhase, RolloutPlan, Stage
from .rows import Deployment, HistoryEntry, PublishedModule
from .share import share_point
from .signing import sign_manifest, verify_manifest
from .store import ModuleStore
from .trust import TrustPolicy, TrustRule

__all__ = [
    "AbiMismatchError",
    "Deployment",
    "DigestMismatchError",
    "FetchError",
    "HistoryEntry",
    "Manifest",
    "ManifestError",
    "ModuleDescriptor",
    "ModuleRefusedError",
    "ModuleStore",
    "ModuleTooLargeError",
    "OciError",
    "PublishedModule",
    "RegistryError",
    "RegistryStoreError",
    "Rollout",
    "RolloutError",
    "RolloutEvent",
    "RolloutPhase",
    "RolloutPlan",
    "SignatureError",
    "Stage",
    "TrustPolicy",
    "TrustRule",
    "UnknownModuleError",
    "UnsignedManifestError",
    "UntrustedPublisherError",
    "VersionConflictError",
    "admit",
    "blob_digest",
    "check_blob",
    "parse_manifest",
    "share_point",
    "sign_manifest",
    "verify_manifest",
]
