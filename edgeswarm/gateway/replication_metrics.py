"""Metrics of module registry replication (``edgeswarm_gateway_module_replication_*``,
``docs/operations.md``) and the ``reason`` label each refusal gets."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeswarm.registry import (
    AbiMismatchError,
    DigestMismatchError,
    FetchError,
    ManifestError,
    ModuleTooLargeError,
    RegistryError,
    SignatureError,
    UnsignedManifestError,
    UntrustedPublisherError,
    VersionConflictError,
)

__all__ = ["ReplicationMetrics", "refusal_reason"]

_REASONS: tuple[tuple[type[RegistryError], str], ...] = (
    (UnsignedManifestError, "unsigned"),
    (SignatureError, "signature"),
    (UntrustedPublisherError, "untrusted"),
    (DigestMismatchError, "digest"),
    (ModuleTooLargeError, "too_large"),
    (AbiMismatchError, "abi"),
    (VersionConflictError, "version_conflict"),
    (ManifestError, "manifest"),
    (FetchError, "bad_chunk"),
)


def refusal_reason(error: RegistryError) -> str:
    """The ``reason`` label of a module refused from a peer."""
    return next((name for kind, name in _REASONS if isinstance(error, kind)), "refused")


class ReplicationMetrics:
    """Registry replication's figures, on the gateway's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        prefix = "edgeswarm_gateway_module_replication"
        self.peers = Gauge(
            f"{prefix}_peers",
            "Sessions with peer gateways that replicate the module registry.",
            registry=registry,
        )
        self.pending = Gauge(
            f"{prefix}_pending_modules",
            "Module versions queued or being fetched from peer gateways.",
            registry=registry,
        )
        self.modules_received = Counter(
            f"{prefix}_modules_received",
            "Module versions fetched from peer gateways and admitted.",
            registry=registry,
        )
        self.bytes_received = Counter(
            f"{prefix}_bytes_received",
            "Module blob bytes received from peer gateways (REGISTRY_CHUNK data).",
            registry=registry,
        )
        self.bytes_sent = Counter(
            f"{prefix}_bytes_sent",
            "Module blob bytes sent to peer gateways (REGISTRY_CHUNK data).",
            registry=registry,
        )
        self.deployments_applied = Counter(
            f"{prefix}_deployments_applied",
            "Deployment records of peer gateways that replaced this gateway's.",
            registry=registry,
        )
        self.indexes_sent = Counter(
            f"{prefix}_indexes_sent",
            "REGISTRY_INDEX frames sent to peer gateways.",
            registry=registry,
        )
        self.refused = Counter(
            f"{prefix}_refused",
            "Modules, chunks, requests and deployment records from peer gateways refused.",
            ["reason"],
            registry=registry,
        )
