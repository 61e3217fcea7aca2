"""Admin client: the operations the ``edgeswarm`` CLI performs on a gateway."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from edgeswarm.identity import KeyPair
from edgeswarm.state import StateSession, SwarmDocument, SwarmSnapshotDict
from edgeswarm.wire import (
    FEATURE_PLACEMENT,
    FEATURE_STATE,
    PROTOCOL_VERSION,
    Hello,
    PlacementReply,
    Role,
    StateSyncRequested,
    StateUpdateReceived,
)

from .address import GatewayAddress
from .errors import SessionEndedError
from .reconnect import open_session
from .session import GatewayClient, StateHandler

DEFAULT_ADMIN_ID = "admin"
"""Peer id an admin key is enrolled as unless told otherwise."""
DEFAULT_TIMEOUT_S = 10.0
"""Longest wait for a gateway's answer."""


@asynccontextmanager
async def admin_session(
    gateway: GatewayAddress,
    *,
    key: KeyPair,
    admin_id: str = DEFAULT_ADMIN_ID,
    state_handler: StateHandler | None = None,
    features: tuple[str, ...] = (),
) -> AsyncIterator[GatewayClient]:
    """A QUIC session to ``gateway`` as role admin, welcomed (asking for ``state`` with
    a ``state_handler``); closed with BYE "done" on exit.

    Raises ``SessionEndedError`` with the gateway's reason when it refuses the key.
    """
    features = (*features, FEATURE_STATE) if state_handler is not None else features
    hello = Hello(
        version=PROTOCOL_VERSION,
        role=Role.ADMIN,
        peer_id=admin_id,
        public_key=key.public_key,
        features=features,
    )
    client = GatewayClient(hello, key)
    client.state_handler = state_handler
    async with open_session(gateway, client):
        try:
            yield client
        finally:
            client.close("done")


async def fetch_status(
    gateway: GatewayAddress,
    *,
    key: KeyPair,
    admin_id: str = DEFAULT_ADMIN_ID,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> dict[str, Any]:
    """Connect as an admin, ask for STATUS, return it as a JSON-ready dict.

    Raises ``SessionEndedError`` with the gateway's reason when it refuses the key.
    """
    async with (
        asyncio.timeout(timeout),
        admin_session(gateway, key=key, admin_id=admin_id) as client,
    ):
        status = await client.request_status(timeout)
    return dataclasses.asdict(status)


async def placement_request(
    gateway: GatewayAddress,
    op: str,
    args: dict[str, Any] | None = None,
    *,
    key: KeyPair,
    admin_id: str = DEFAULT_ADMIN_ID,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> PlacementReply:
    """Connect as an admin (feature ``placement``), ask for one placement operation.

    Raises ``SessionEndedError`` with the gateway's reason when it refuses the key, and
    also when the gateway does not speak feature ``placement``.
    """
    async with (
        asyncio.timeout(timeout),
        admin_session(gateway, key=key, admin_id=admin_id, features=(FEATURE_PLACEMENT,)) as client,
    ):
        if FEATURE_PLACEMENT not in client.session.features:
            raise SessionEndedError("the gateway does not speak feature placement; upgrade it")
        return await client.request_placement(op, args or {}, timeout)


class StateMirror:
    """A read-only replica of a gateway's swarm document (a client ``StateHandler``).

    It asks for everything (STATE_SYNC with an empty state vector), answers the
    gateway's STATE_SYNC so that the gateway pushes every later change, and
    merges what arrives (a :class:`~edgeswarm.state.StateSession`, as every
    state peer does: malformed frames are refused with an ERROR); it never writes.
    """

    def __init__(self) -> None:
        self.document = SwarmDocument("admin-mirror")
        self.session: StateSession | None = None
        self.changed = asyncio.Event()
        self.ended: str | None = None

    @property
    def updates(self) -> int:
        """STATE_UPDATE frames merged in this session."""
        return self.session.updates_merged if self.session is not None else 0

    def session_ready(self, client: GatewayClient) -> None:
        gateway_id = client.welcome.gateway_id if client.welcome is not None else "gateway"
        self.session = StateSession(self.document, peer_id=gateway_id)
        client.send_state(self.session.sync_request())

    def state_received(
        self, client: GatewayClient, event: StateSyncRequested | StateUpdateReceived
    ) -> None:
        if self.session is None:
            return
        merged = self.session.updates_merged
        for frame in self.session.receive(event):
            client.send_state(frame)
        if self.session.updates_merged != merged:
            self.changed.set()

    def session_ended(self, client: GatewayClient) -> None:
        self.ended = client.closed_reason or "session ended"
        self.changed.set()


SnapshotCallback = Callable[[str, SwarmSnapshotDict], bool | None]
"""Receives ``(gateway_id, snapshot)``; returning True stops the watch."""


async def watch_state(
    gateway: GatewayAddress,
    *,
    key: KeyPair,
    on_snapshot: SnapshotCallback,
    admin_id: str = DEFAULT_ADMIN_ID,
    timeout: float = DEFAULT_TIMEOUT_S,
    duration: float | None = None,
    count: int | None = None,
) -> int:
    """Call ``on_snapshot`` with the swarm state now, then after every change.

    Stops after ``count`` snapshots or ``duration`` seconds, whichever comes
    first (``count=1``: a one-shot get); returns the number of snapshots.
    Raises ``SessionEndedError`` when the gateway refuses the key or does not
    serve state, ``TimeoutError`` when the first snapshot takes over ``timeout``.
    """
    mirror = StateMirror()
    async with admin_session(gateway, key=key, admin_id=admin_id, state_handler=mirror) as client:
        welcome = client.welcome
        assert welcome is not None  # admin_session yields welcomed clients
        async with asyncio.timeout(timeout):
            if FEATURE_STATE not in client.session.features:
                raise SessionEndedError(f"gateway {welcome.gateway_id} does not serve swarm state")
            while mirror.updates == 0:
                if mirror.ended is not None:
                    raise SessionEndedError(mirror.ended)
                mirror.changed.clear()
                await mirror.changed.wait()
        return await _follow(welcome.gateway_id, mirror, on_snapshot, duration, count)


async def _follow(
    gateway_id: str,
    mirror: StateMirror,
    on_snapshot: SnapshotCallback,
    duration: float | None,
    count: int | None,
) -> int:
    loop = asyncio.get_running_loop()
    deadline = None if duration is None else loop.time() + duration
    shown, last = 0, None
    while count is None or shown < count:
        snapshot = mirror.document.snapshot()
        if snapshot != last:
            shown, last = shown + 1, snapshot
            if on_snapshot(gateway_id, snapshot) is True:
                break
            continue
        remaining = None if deadline is None else deadline - loop.time()
        if mirror.ended is not None or (remaining is not None and remaining <= 0):
            break
        mirror.changed.clear()
        try:
            async with asyncio.timeout(remaining):
                await mirror.changed.wait()
        except TimeoutError:
            break
    return shown


async def fetch_state(
    gateway: GatewayAddress,
    *,
    key: KeyPair,
    admin_id: str = DEFAULT_ADMIN_ID,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> tuple[str, SwarmSnapshotDict]:
    """Connect as an admin and return ``(gateway_id, snapshot)`` of the swarm state."""
    got: list[tuple[str, SwarmSnapshotDict]] = []

    def keep(gateway_id: str, snapshot: SwarmSnapshotDict) -> bool:
        got.append((gateway_id, snapshot))
        return True

    await watch_state(
        gateway, key=key, on_snapshot=keep, admin_id=admin_id, timeout=timeout, count=1
    )
    return got[0]
