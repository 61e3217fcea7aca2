"""The one exception root of edgeswarm, and the whole tree under it.

Every error edgeswarm raises on purpose is an :class:`EdgeswarmError`, so a
caller (the CLI first) catches one class. Each package keeps its own errors
beside its code and draws its subtree in its module docstring; this is the
whole tree (``tests/test_layout.py`` checks that it matches the classes)::

    EdgeswarmError                      edgeswarm.errors
    ├── WireError                       edgeswarm.wire.errors: error_code goes in ERROR / BYE
    │   ├── RemoteProtocolError         the peer sent what the protocol forbids
    │   │   ├── MalformedFrame
    │   │   ├── UnknownFrameType
    │   │   ├── FrameTooLarge
    │   │   ├── InvalidArray
    │   │   ├── BatchTooLarge
    │   │   ├── UnexpectedFrame
    │   │   ├── UnsupportedVersion
    │   │   └── CreditExceeded
    │   └── LocalProtocolError          we tried to send what the protocol forbids
    ├── HandshakeError                  edgeswarm.transport.api (also a ConnectionError)
    │   └── ConnectTimeoutError         (also a TimeoutError)
    ├── CertificateFileError            edgeswarm.transport.api
    ├── ListenError                     edgeswarm.transport.api (also an OSError)
    ├── MetricsEndpointError            edgeswarm.telemetry.endpoint
    ├── SessionEndedError               edgeswarm.client.errors (also a ConnectionError)
    │   └── RedirectedError             edgeswarm.client.errors
    ├── AuthRefusedError                edgeswarm.client.errors: refused for good
    ├── KeyFileError                    edgeswarm.identity.keys
    ├── DirectoryInUse                  edgeswarm.storage.lock: another process holds it
    ├── StateError                      edgeswarm.state.errors: error_code as well
    │   ├── RemoteStateError
    │   │   ├── MalformedUpdate
    │   │   ├── MalformedStateVector
    │   │   ├── ForeignStateEntry
    │   │   └── ReadOnlyState
    │   └── LocalStateError
    │       ├── InvalidKey
    │       │   └── SwarmStateRefusedError  edgeswarm.edge.policy.swarm_state
    │       ├── WriterReused
    │       └── StoreError
    ├── ModelError                      edgeswarm.models.errors
    │   ├── ModelLoadError
    │   ├── ModelNotFound
    │   └── ModelInputError
    ├── EdgeError                       edgeswarm.edge.policy.errors
    │   └── PolicyError
    │       ├── PolicyLoadError
    │       │   ├── PolicyCompileError
    │       │   └── PolicyStateLayoutError
    │       │       └── PolicyMigrationError
    │       ├── PolicyTrap
    │       │   ├── PolicyMemoryExceeded
    │       │   └── PolicyDeadlineExceeded
    │       ├── PolicyFuelExhausted
    │       │   └── PolicyHostCallLimit
    │       └── PolicyAbiError
    │           ├── PolicyNonFiniteActionError
    │           └── PolicyActionBoundsError
    ├── SpoolError                      edgeswarm.edge.spool
    │   ├── SpoolCorruptError
    │   ├── SpoolInUse
    │   ├── SpoolFull
    │   ├── SpoolDiskFull
    │   ├── PayloadTooLarge             (also a ValueError)
    │   └── SeqOutOfOrder               (also a ValueError)
    ├── ObservationLogError             edgeswarm.gateway.log.records
    │   ├── LogOpenError
    │   │   └── LogCorruptError
    │   ├── LogWriteError
    │   ├── LogOverloaded
    │   ├── LogClosed
    │   ├── LogRecordRejected
    │   ├── LogSeqConflict
    │   ├── LogRecordCorrupt
    │   └── ExportError                 edgeswarm.gateway.log.export: a stored payload is no batch
    ├── IoError                         edgeswarm.edge.io.base: an --io source/sink cannot open
    │   └── MalformedPayloadError       edgeswarm.edge.io.mqtt_codec (also a ValueError)
    ├── RecordingError                  edgeswarm.storage.recording: missing, foreign, damaged
    ├── AgentStoreError                 edgeswarm.gateway.agent_store
    ├── PeerRegistryError               edgeswarm.gateway.peers
    │   ├── EnrollmentConflict
    │   └── TokenUsedUp
    ├── InferenceError                  edgeswarm.inference.errors
    │   ├── ModelUnavailableError       a model file or device cannot be served
    │   ├── TensorError                 a request's tensors do not fit (OIP 400, FAILED)
    │   ├── NodeOverloadedError         a node has too many calls waiting (OIP 503, REJECTED)
    │   └── ForwardError                a node or OIP server failed a batch (retried)
    ├── PlacementError                  edgeswarm.placement.errors
    │   ├── UnknownNodeError            (also a KeyError)
    │   ├── NoEligibleNodeError
    │   ├── HandoverRefusedError
    │   └── LeaseError                  lease options break the lease rule (also a ValueError)
    ├── RegistryError                   edgeswarm.registry.errors
    │   ├── ManifestError               a manifest document is malformed
    │   ├── ModuleRefusedError          a publish was refused; nothing changed
    │   │   ├── UnsignedManifestError
    │   │   ├── SignatureError
    │   │   ├── UntrustedPublisherError
    │   │   ├── DigestMismatchError     the blob is not the one the manifest names
    │   │   ├── ModuleTooLargeError
    │   │   ├── AbiMismatchError
    │   │   └── VersionConflictError
    │   ├── UnknownModuleError
    │   ├── RegistryStoreError
    │   ├── RolloutError
    │   ├── FetchError
    │   └── OciError
    ├── BuildError                      edgeswarm.agents_wasm.build (also a RuntimeError)
    └── Usage                           edgeswarm.cli.exits: the command line is wrong (exit 2)

Who caused it: the peer (``RemoteProtocolError``, ``RemoteStateError``: caught
at the session boundary, answered with an ERROR frame carrying the error's
``error_code``, never ending the process), a Wasm module (``PolicyError``:
the policy is quarantined), the disk or the operator's files (``SpoolError``,
``ObservationLogError``, ``KeyFileError``, ...: the process reports it in one
line and exits, or refuses the one request), or our own code
(``LocalProtocolError``, ``LocalStateError``).
"""

from __future__ import annotations

__all__ = ["EdgeswarmError"]


class EdgeswarmError(Exception):
    """Base of every error edgeswarm raises on purpose."""
