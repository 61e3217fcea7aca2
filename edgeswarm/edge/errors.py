"""Errors of the edge compute core.

One tree. Everything a policy module can do wrong (at load or at run time)
is a :class:`PolicyError`; the host never lets a ``wasmtime.Trap`` or
``wasmtime.WasmtimeError`` escape::

    EdgeError                      base of every edge error
    └── PolicyError                a policy module failed; carries the policy name
        ├── PolicyLoadError        refused at load: bad bytes, imports, missing or
        │                          mistyped exports, wrong ABI version, bad dims
        ├── PolicyTrap             a call trapped (unreachable, out-of-bounds, ...)
        ├── PolicyFuelExhausted    a call used up its fuel budget
        └── PolicyAbiError         a call returned but broke the ABI (nonzero
                                   ``es_step`` status, ``es_alloc`` returned 0)

A :class:`~edgeswarm.edge.policy_set.PolicySet` catches ``PolicyError`` at its
boundary and quarantines the policy; other policies keep running.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every edge compute error."""


class PolicyError(EdgeError):
    """A policy module failed to load or to run."""

    def __init__(self, message: str, *, policy: str = "") -> None:
        super().__init__(f"policy {policy!r}: {message}" if policy else message)
        self.policy = policy
        """Name of the policy that failed ("" when not known)."""


class PolicyLoadError(PolicyError):
    """The module was refused at load time; it never ran."""


class PolicyTrap(PolicyError):  # noqa: N818 (name from the design)
    """A call into the module trapped."""


class PolicyFuelExhausted(PolicyError):  # noqa: N818 (name from the design)
    """A call into the module consumed all the fuel it was given."""


class PolicyAbiError(PolicyError):
    """A call returned normally but its result breaks the ABI."""

    def __init__(self, message: str, *, policy: str = "", status: int | None = None) -> None:
        super().__init__(message, policy=policy)
        self.status = status
        """The status code the module returned, when there was one."""
