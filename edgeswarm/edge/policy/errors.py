"""Errors of the edge compute core.

One tree. Everything a policy module can do wrong (at load or at run time)
is a :class:`PolicyError`; the host never lets a ``wasmtime.Trap`` or
``wasmtime.WasmtimeError`` escape. Each policy error has a stable ``kind``
(the ``kind`` label of ``edgeswarm_edge_policy_faults_total``)::

    EdgeError                          base of every edge compute error (an EdgeswarmError)
    └── PolicyError                    a policy module failed; carries the policy name
        ├── PolicyLoadError            "load": refused at load: unreadable or malformed
        │   │                          bytes, forbidden import, missing or mistyped
        │   │                          export, wrong ABI version, bad descriptor,
        │   │                          instantiation failed (e.g. memory over the limit),
        │   │                          or anything else that went wrong while loading
        │   ├── PolicyCompileError     "load": too big, too many functions, a feature
        │   │                          ABI v1 does not allow, invalid, or compiling
        │   │                          ran past its memory or time limit
        │   └── PolicyStateLayoutError "load": a hot swap's new module keeps another
        │       │                      state layout than the one it replaces and
        │       │                      exports no ``es_migrate``
        │       └── PolicyMigrationError "load": its ``es_migrate`` failed (trapped,
        │                              ran out of fuel or time, returned nonzero,
        │                              wrote non-finite state): nothing was migrated
        ├── PolicyTrap                 "trap": a call trapped (unreachable, out of
        │   │                          bounds, a host import given bad pointers, ...)
        │   ├── PolicyMemoryExceeded   "memory": a call trapped while the instance's
        │   │                          memory was at its limit (``memory.grow`` had
        │   │                          been refused, the module then failed)
        │   └── PolicyDeadlineExceeded "deadline": a call ran past its wall-clock
        │                              deadline (in Wasm or in host calls)
        ├── PolicyFuelExhausted        "fuel": a call used up its fuel budget
        │   └── PolicyHostCallLimit    "host_calls": a call made more host calls than
        │                              its cap
        └── PolicyAbiError             "abi": a call returned but broke the ABI
            │                          (nonzero ``es_step``/``es_init`` status,
            │                          ``es_alloc`` returned 0 or a bad pointer)
            ├── PolicyNonFiniteActionError  "nonfinite_action": ``es_step`` wrote a NaN
            │                          or infinite action
            └── PolicyActionBoundsError "action_bounds": ``es_step`` wrote an action
                                       outside the bounds its descriptor declares

All of them are faults of the *module* (the peer, in h11 terms); misuse of
the host API by our own code raises ``ValueError``/``TypeError`` instead.
A :class:`~edgeswarm.edge.policy.set.PolicySet` catches ``PolicyError`` at
its boundary and quarantines the policy; other policies keep running.
"""

from __future__ import annotations

from typing import ClassVar

from edgeswarm.errors import EdgeswarmError


class EdgeError(EdgeswarmError):
    """Base of every edge compute error."""


class PolicyError(EdgeError):
    """A policy module failed to load or to run."""

    kind: ClassVar[str] = "error"
    """Stable label for metrics and logs."""

    def __init__(self, message: str, *, policy: str = "") -> None:
        super().__init__(f"policy {policy!r}: {message}" if policy else message)
        self.policy = policy
        """Name of the policy that failed ("" when not known)."""
        self.detail = message
        """The message without the policy prefix."""


class PolicyLoadError(PolicyError):
    """The module was refused at load time; it never ran a step."""

    kind = "load"


class PolicyStateLayoutError(PolicyLoadError):
    """A hot swap was refused: the new module's state layout (``state_dim``) is not the
    old one's and it exports no ``es_migrate`` (or the host cannot run it there), so the
    agents' state would be misread; nothing was changed."""


class PolicyMigrationError(PolicyStateLayoutError):
    """A hot swap across a changed state layout was refused: the new module's
    ``es_migrate`` failed; no agent's state was changed."""

    def __init__(self, message: str, *, policy: str = "", cause: str = "") -> None:
        super().__init__(message, policy=policy)
        self.cause = cause
        """The kind of the failure inside ``es_migrate`` (``trap``, ``fuel``, ``abi``...)."""


class PolicyCompileError(PolicyLoadError):
    """The module was refused before or while compiling it (limits, features, validity)."""

    def __init__(self, message: str, *, policy: str = "", features: tuple[str, ...] = ()) -> None:
        super().__init__(message, policy=policy)
        self.features = features
        """The WebAssembly features the module needs that ABI v1 does not allow."""


class PolicyTrap(PolicyError):  # noqa: N818 (name from the design)
    """A call into the module trapped."""

    kind = "trap"


class PolicyMemoryExceeded(PolicyTrap):
    """A call trapped with the instance's linear memory at its limit."""

    kind = "memory"


class PolicyDeadlineExceeded(PolicyTrap):
    """A call was interrupted at its wall-clock deadline."""

    kind = "deadline"


class PolicyFuelExhausted(PolicyError):  # noqa: N818 (name from the design)
    """A call into the module consumed all the fuel it was given."""

    kind = "fuel"


class PolicyHostCallLimit(PolicyFuelExhausted):
    """A call made more host-import calls than it is allowed."""

    kind = "host_calls"


class PolicyAbiError(PolicyError):
    """A call returned normally but its result breaks the ABI."""

    kind = "abi"

    def __init__(self, message: str, *, policy: str = "", status: int | None = None) -> None:
        super().__init__(message, policy=policy)
        self.status = status
        """The status code the module returned, when there was one."""


class PolicyNonFiniteActionError(PolicyAbiError):
    """``es_step`` wrote an action that is NaN or infinite."""

    kind = "nonfinite_action"


class PolicyActionBoundsError(PolicyAbiError):
    """``es_step`` wrote an action outside the bounds the descriptor declares."""

    kind = "action_bounds"


def _kinds(cls: type[PolicyError]) -> list[str]:
    found = [] if cls is PolicyError else [cls.kind]
    for sub in cls.__subclasses__():
        found.extend(_kinds(sub))
    return found


FAULT_KINDS: tuple[str, ...] = tuple(dict.fromkeys(_kinds(PolicyError)))
"""Every fault kind a policy can be quarantined for (``policy_faults_total{kind}``)."""
