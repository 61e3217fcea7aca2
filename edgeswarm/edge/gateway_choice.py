"""Which gateway the edge delivers to next: its ``--gateway`` list, and REDIRECTs.

Sans-I/O. An edge may be given several gateways (``--gateway`` repeated): it
uses the first; when an attempt or a session fails it moves on to the next, in
a circle. A gateway that does not own the edge on the gateway ring answers
with REDIRECT (``docs/protocol.md`` section 13.6) naming the owner: the edge
goes there next, with the same pinned CA and QUIC settings. Views of the ring
can differ for a moment (a gateway sees a peer as alive that another does not
yet), so REDIRECTs in a row are bounded: after :data:`MAX_REDIRECTS` without a
session the edge takes the next gateway of its own list instead, after a
backoff, until the views agree again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from edgeswarm.client.address import GatewayAddress
from edgeswarm.wire import Redirect

__all__ = ["MAX_REDIRECTS", "GatewayChoice"]

MAX_REDIRECTS = 3
"""REDIRECTs followed in a row without a session; the next one counts as a failure."""


class GatewayChoice:
    """The gateway to try now, from the configured list and the last REDIRECT."""

    def __init__(self, gateways: Sequence[GatewayAddress]) -> None:
        if not gateways:
            raise ValueError("an edge needs at least one gateway")
        self.gateways = tuple(gateways)
        """The configured gateways (``--gateway``), in order."""
        self._index = 0
        self._redirected_to: GatewayAddress | None = None
        self.redirects_in_a_row = 0
        """REDIRECTs followed since the last session opened."""

    @property
    def current(self) -> GatewayAddress:
        """Where to connect now."""
        return self._redirected_to or self.gateways[self._index]

    def connected(self) -> None:
        """A session opened (WELCOME) at :attr:`current`."""
        self.redirects_in_a_row = 0

    def failed(self) -> GatewayAddress:
        """An attempt or a session at :attr:`current` failed: the next configured
        gateway is tried (a gateway we were sent to is not tried again unless the
        ring sends us there again). Returns the new :attr:`current`."""
        if self._redirected_to is None:
            self._next_configured()
        self._redirected_to = None
        return self.current

    def _next_configured(self) -> None:
        """Go on to the next configured gateway, round the list."""
        self._index = (self._index + 1) % len(self.gateways)

    def redirected(self, redirect: Redirect) -> bool:
        """The gateway sent us to ``redirect``'s gateway. True: connect there now;
        False: too many REDIRECTs in a row, treat it as a failure (back off)."""
        if self.redirects_in_a_row >= MAX_REDIRECTS:
            self.redirects_in_a_row = 0
            self._redirected_to = None  # not failed(): a loop of REDIRECTs leaves the
            self._next_configured()  # configured gateway that started it, too
            return False
        self.redirects_in_a_row += 1
        self._redirected_to = dataclasses.replace(
            self.gateways[self._index], host=redirect.host, port=redirect.port, server_name=None
        )
        return True
