"""What a server spends on peers nobody has authenticated yet: the pre-auth budget, sans-I/O.

A connection is *unauthenticated* from its first Initial packet until its
handler says the peer proved its identity (``SessionLink.mark_authenticated``:
the gateway does after WELCOME). :class:`Admission` decides, for each new
connection attempt, from counts and a clock given to it:

- **refuse** (drop the packet, keep nothing) when unauthenticated connections
  reach ``max_unauthenticated`` in all, or ``max_unauthenticated_per_address``
  from the attempt's IP address;
- **retry** (answer with a stateless QUIC Retry: the client must come back
  with the token, proving it receives packets at its address) when the
  attempt carries no valid token and either ``retry_above`` connections are
  unauthenticated or the handshake budget is spent: a flood of forged
  Initials, whose source addresses never see the Retry, costs one small
  packet each and creates nothing;
- **accept** otherwise, within a budget of ``new_per_s`` new connections a
  second (token buckets, burst ``new_burst``): a handshake costs the event
  loop about 0.7 ms (qh3) to 3 ms (aioquic), so the budget bounds how long
  new connections can keep authenticated peers waiting. Attempts without a
  token and attempts that proved their address have a bucket each, so a
  flood of forged Initials never spends the budget of real clients. An
  attempt that proved its address but finds its budget spent is dropped;
  its client sends the Initial again after its probe timeout.

Accepted connections that are still unauthenticated ``deadline_s`` after
they were created are closed by the endpoint (``hello_timeout`` of the
gateway, counted from the first packet: a peer that finishes TLS and then
only sends PINGs is closed like one that never finishes). A new connection
whose first datagrams make the QUIC library answer nothing (they did not
decrypt: a forged Initial) is dropped at once, not kept for its idle timeout.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .api import AdmissionLimits

__all__ = ["Admission", "AdmissionStats", "Verdict"]


class Verdict(enum.Enum):
    """What to do with a new connection attempt."""

    ACCEPT = "accept"
    """Create the connection."""
    RETRY = "retry"
    """Answer with a QUIC Retry packet; keep nothing."""
    REFUSE = "refuse"
    """Drop the packet; keep nothing."""


@dataclass
class AdmissionStats:
    """Counters of one server's pre-auth budget (``edgeswarm_gateway_preauth_*``)."""

    accepted: int = 0
    """Connections created."""
    retries: int = 0
    """Retry packets sent (attempts asked to prove their address)."""
    refused: int = 0
    """Attempts dropped because a cap was reached (or their Retry token was invalid)."""
    discarded: int = 0
    """Connections dropped at once: their first datagrams did not decrypt."""
    expired: int = 0
    """Connections closed because they were not authenticated within ``deadline_s``."""
    authenticated: int = 0
    """Connections whose peer proved its identity."""


class Admission:
    """Counts unauthenticated connections per address and decides on new attempts."""

    def __init__(self, limits: AdmissionLimits, *, now: float) -> None:
        self.limits = limits
        self.stats = AdmissionStats()
        self._per_address: dict[str, int] = {}
        self._unauthenticated = 0
        self._unvalidated = _Bucket(limits.new_per_s, limits.new_burst, now)
        self._validated = _Bucket(limits.new_per_s, limits.new_burst, now)
        """Apart, so that forged Initials never spend the budget of proven addresses."""

    @property
    def unauthenticated(self) -> int:
        """Connections not authenticated yet."""
        return self._unauthenticated

    def decide(self, address: str, *, validated: bool, now: float) -> Verdict:
        """The verdict on a new attempt from ``address`` (an IP address).

        ``validated``: it carried a valid Retry token (the address is proven).
        """
        limits = self.limits
        if (
            self._unauthenticated >= limits.max_unauthenticated
            or self._per_address.get(address, 0) >= limits.max_unauthenticated_per_address
        ):
            self.stats.refused += 1
            return Verdict.REFUSE
        if not validated and self._unauthenticated >= limits.retry_above:
            self.stats.retries += 1
            return Verdict.RETRY
        bucket = self._validated if validated else self._unvalidated
        if not bucket.take(now):  # more handshakes a second than the budget
            if validated:  # it proved its address: it retransmits its Initial later
                self.stats.refused += 1
                return Verdict.REFUSE
            self.stats.retries += 1
            return Verdict.RETRY
        return Verdict.ACCEPT

    def opened(self, address: str) -> None:
        """An accepted attempt became a connection (unauthenticated)."""
        self.stats.accepted += 1
        self._unauthenticated += 1
        self._per_address[address] = self._per_address.get(address, 0) + 1

    def left(self, address: str) -> None:
        """An unauthenticated connection authenticated, or went away."""
        count = self._per_address.get(address, 0)
        if count <= 0:
            return
        self._unauthenticated -= 1
        if count == 1:
            del self._per_address[address]
        else:
            self._per_address[address] = count - 1

    def refused_token(self) -> None:
        """An attempt came with a Retry token that does not validate."""
        self.stats.refused += 1


class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens = float(burst)
        self._at = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        self._tokens = min(self._burst, self._tokens + max(0.0, now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
