"""Quarantined policies put back in service after ``--policy-retry`` seconds."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .metrics import EdgeMetrics
    from .policy.set import PolicyFault, PolicySet

__all__ = ["PolicyRetry"]

logger = logging.getLogger("edgeswarm.edge")


class PolicyRetry:
    """Counts each policy fault; re-enables a quarantined policy ``retry_s`` after its
    fault (None: never)."""

    def __init__(self, retry_s: float | None, metrics: EdgeMetrics) -> None:
        self._retry_s = retry_s
        self._metrics = metrics
        self._quarantined_at: dict[int, float] = {}
        """Slot -> when its policy was quarantined."""

    def faulted(self, fault: PolicyFault) -> None:
        """The policy set's ``on_fault``."""
        self._metrics.policy_faults.labels(policy=fault.policy, kind=fault.kind).inc()
        self._quarantined_at[fault.slot] = time.monotonic()

    def retry_due(self, policies: PolicySet) -> None:
        """Between ticks: re-enable the policies whose time came."""
        retry = self._retry_s
        if retry is None or not self._quarantined_at:
            return
        now = time.monotonic()
        for slot, since in list(self._quarantined_at.items()):
            if now - since < retry:
                continue
            del self._quarantined_at[slot]  # a failed reload re-enters through faulted()
            if policies.reenable(slot):
                self._metrics.policies_reenabled.inc()
                logger.info(
                    "policy re-enabled",
                    extra={"policy": policies.name_of(slot), "slot": slot},
                )
