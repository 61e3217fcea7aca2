"""Reaching a gateway again and again: backoff between attempts, one session per attempt.

:func:`open_session` connects a :class:`~edgeswarm.client.session.GatewayClient`
to a :class:`~edgeswarm.client.address.GatewayAddress` and waits for WELCOME;
:class:`Reconnect` counts the failed attempts and draws the delay before the
next one. The edge's uplink and the gateway's peer links loop over both.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from edgeswarm.transport import quic
from edgeswarm.transport.api import SessionLink, TransportSettings
from edgeswarm.transport.tickets import TicketStore
from edgeswarm.wire import Welcome

from .address import GatewayAddress
from .session import GatewayClient

__all__ = ["Backoff", "Reconnect", "open_session"]


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential backoff with full jitter between reconnect attempts."""

    initial_s: float = 0.2
    """First delay."""
    max_s: float = 5.0
    """Longest delay."""
    factor: float = 2.0
    """Growth per failed attempt."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Delay before attempt ``attempt`` (1 = first retry): uniform in [d/2, d]."""
        ceiling = min(self.max_s, self.initial_s * self.factor ** max(0, attempt - 1))
        return ceiling / 2 + rng.random() * ceiling / 2


class Reconnect:
    """Failed attempts since the last session, and the delay before the next one."""

    def __init__(self, backoff: Backoff, *, seed: int | None = None) -> None:
        self.backoff = backoff
        self.attempt = 0
        """Attempts failed in a row (0 once a session opened)."""
        self._rng = random.Random(seed)

    def succeeded(self) -> None:
        """A session opened: the next failure waits the shortest delay again."""
        self.attempt = 0

    def failed(self) -> float:
        """An attempt or a session failed: seconds to wait before the next one."""
        self.attempt += 1
        return self.backoff.delay(self.attempt, self._rng)


@asynccontextmanager
async def open_session(
    address: GatewayAddress,
    client: GatewayClient,
    *,
    tickets: TicketStore | None = None,
    early_data: bool = False,
    settings: TransportSettings | None = None,
) -> AsyncIterator[tuple[SessionLink, Welcome]]:
    """Connect ``client`` to ``address``; yield the link and the gateway's WELCOME.

    ``tickets``, ``early_data`` and ``settings`` as in :func:`edgeswarm.transport.quic.connect`
    (a resumed session may carry the HELLO as 0-RTT data). Raises what
    ``connect`` raises, ``SessionEndedError`` when the gateway refuses, and
    ``TimeoutError`` when WELCOME takes over ``address.connect_timeout_s``.
    """
    async with quic.connect(
        address.host,
        address.port,
        ca_file=address.ca_file,
        handler=client,
        server_name=address.server_name,
        stack=address.stack,
        tickets=tickets,
        connect_timeout=address.connect_timeout_s,
        early_data=early_data,
        settings=settings,
    ) as link:
        welcome = await client.wait_welcomed(address.connect_timeout_s)
        yield link, welcome
