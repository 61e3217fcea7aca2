"""Gateway-to-gateway replication of the swarm document.

A gateway started with ``--peer HOST:PORT`` keeps one outbound session to
each peer gateway. It connects like any other peer: QUIC with the peer's CA
pinned, HELLO with role ``gateway`` and feature ``state``, and the peer's
CHALLENGE signed with this gateway's identity key (which the peer's
operator enrolled with ``edgeswarm keys add --role gateway``). Over that
session the two documents sync exactly as an edge's does (state vectors
first, then incremental updates both ways), so replicas converge after any
partition: when the link comes back, each side sends only what the other
lacks. Lost sessions are retried with exponential backoff and jitter.

One direction is enough: the accepting gateway treats the session as one
more state peer. Configuring both directions works too (redundant).

When both gateways speak feature ``registry`` the same session replicates the
module registry too (``module_replication.py``): this link is one more
:class:`~.module_replication.RegistryPeer`.

Every replica of a Kubernetes StatefulSet takes the same ``--peer`` list (the
set's stable names, ``edgeswarm-gateway-0.edgeswarm-gateway-headless...``,
with ``--gateway-id`` its pod name): :func:`names_this_gateway` tells the entry
naming the gateway itself, which it skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.errors import SessionEndedError
from edgeswarm.client.reconnect import Backoff, Reconnect, open_session
from edgeswarm.client.session import GatewayClient
from edgeswarm.identity import KeyPair
from edgeswarm.state import Writers
from edgeswarm.wire import (
    FEATURE_REGISTRY,
    FEATURE_STATE,
    PROTOCOL_VERSION,
    Hello,
    RegistryChunk,
    RegistryIndex,
    RegistryRequest,
    Role,
    StateSyncRequested,
    StateUpdate,
    StateUpdateReceived,
)

from .config import DEFAULT_PEER_TIMEOUT_S
from .module_replication import ModuleReplication
from .state_service import StateService

__all__ = ["PEER_BACKOFF", "PeerGatewayLink", "names_this_gateway"]

logger = logging.getLogger("edgeswarm.gateway")

PEER_BACKOFF = Backoff(initial_s=0.1, max_s=2.0)
"""Delays between attempts to reach a peer gateway (shorter than an edge's: peers
are few, and a replica that lags serves stale state)."""


def names_this_gateway(host: str, gateway_id: str) -> bool:
    """Whether the peer address ``host`` is this gateway's own name: its first DNS
    label is ``gateway_id`` (a StatefulSet pod's name is the first label of its
    stable DNS name). An IP address never is."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.split(".", 1)[0].lower() == gateway_id.lower()
    return False


class PeerGatewayLink:
    """One outbound replication session, kept up until :meth:`stop`."""

    def __init__(
        self,
        address: GatewayAddress,
        *,
        gateway_id: str,
        key: KeyPair,
        service: StateService,
        registry: ModuleReplication | None = None,
        backoff: Backoff = PEER_BACKOFF,
        timeout_s: float = DEFAULT_PEER_TIMEOUT_S,
        on_change: Callable[[PeerGatewayLink], None] | None = None,
    ) -> None:
        """``registry``: replicate the module registry too (feature ``registry``).
        ``timeout_s``: a peer that answers nothing this long is down (the link sends a
        STATE_SYNC every third of it, which the peer answers). ``on_change``: called
        when the link comes up or goes down (the gateway ring)."""
        self.address = address
        self.service = service
        self.registry = registry
        self.hello = Hello(
            version=PROTOCOL_VERSION,
            role=Role.GATEWAY,
            peer_id=gateway_id,
            public_key=key.public_key,
            features=(FEATURE_STATE, FEATURE_REGISTRY) if registry else (FEATURE_STATE,),
        )
        self._key = key
        self._client: GatewayClient | None = None
        self._stopping = asyncio.Event()
        self._reconnect = Reconnect(backoff)
        self.connects = 0
        """Sessions established so far."""
        self.remote_id: str | None = None
        """The peer's gateway id, once welcomed."""
        self.timeout_s = timeout_s
        self._on_change = on_change
        self._last_heard = self._last_sync = 0.0

    @property
    def connected(self) -> bool:
        """Whether a session with the peer is open and syncing."""
        return self._client is not None

    @property
    def peer_address(self) -> tuple[str, int]:
        """Where the peer is reached (``--peer``): what a REDIRECT to it names."""
        return self.address.host, self.address.port

    @property
    def state_peer_id(self) -> str:
        return self.remote_id or str(self.address)

    state_writers: Writers = None
    """A peer gateway replicates every writer's entries."""
    state_may_write = True

    # StatePeer
    def send_state_update(self, update: bytes) -> None:
        if self._client is not None:
            self._client.send_state(StateUpdate(update=update))

    # StateHandler (client.session)
    def session_ready(self, client: GatewayClient) -> None:
        self._client = client
        self.remote_id = client.welcome.gateway_id if client.welcome else None
        self._last_heard = self._last_sync = time.monotonic()
        client.send_state(self.service.sync_request(self))
        if self.registry is not None and FEATURE_REGISTRY in client.session.features:
            self.registry.attach(self)
        if self._on_change is not None:
            self._on_change(self)

    def state_received(
        self, client: GatewayClient, event: StateSyncRequested | StateUpdateReceived
    ) -> None:
        self._last_heard = time.monotonic()
        for frame in self.service.receive(self, event):
            client.send_state(frame)

    def session_ended(self, client: GatewayClient) -> None:
        if self._client is not client:
            return
        self._client = None
        self.service.detach(self)
        if self.registry is not None:
            self.registry.detach(self)
        if self._on_change is not None:
            self._on_change(self)

    def _heartbeat(self, client: GatewayClient) -> None:
        """Ask the peer for what we lack every third of the timeout; give the session up
        when the peer answered nothing for the whole timeout (it is down or cut off)."""
        now = time.monotonic()
        if now - self._last_heard > self.timeout_s:
            client.abandon(f"peer gateway answered nothing for {self.timeout_s:g} s")
        elif now - self._last_sync >= self.timeout_s / 3 and self._client is client:
            self._last_sync = now
            client.send_state(self.service.sync_request(self))

    # RegistryPeer (module_replication)
    @property
    def registry_peer_id(self) -> str:
        return self.state_peer_id

    def send_registry_frame(self, frame: RegistryIndex | RegistryRequest | RegistryChunk) -> None:
        if self._client is not None:
            self._client.send_registry(frame)

    def _registry_received(
        self, client: GatewayClient, frame: RegistryIndex | RegistryRequest | RegistryChunk
    ) -> None:
        if self.registry is not None and self._client is client:
            self.registry.receive(self, frame)

    # lifecycle
    async def run(self) -> None:
        """Connect, sync, reconnect with backoff, until :meth:`stop`."""
        while not self._stopping.is_set():
            client = GatewayClient(self.hello, self._key)
            client.state_handler = self
            client.registry_handler = self._registry_received
            try:
                async with open_session(self.address, client) as (_, welcome):
                    if FEATURE_STATE not in client.session.features:
                        raise ConnectionError(f"gateway {welcome.gateway_id} does not sync state")
                    self._reconnect.succeeded()
                    self.connects += 1
                    logger.info(
                        "replicating with peer gateway",
                        extra={"peer_id": welcome.gateway_id, "peer": self.state_peer_id},
                    )
                    while client.closed_reason is None and not self._stopping.is_set():
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(min(0.5, self.timeout_s / 6)):
                                await client.wait_change()
                        self._heartbeat(client)
                    client.close("gateway stopping")
                    if client.closed_reason is not None and not self._stopping.is_set():
                        raise SessionEndedError(client.closed_reason)
            except (ConnectionError, OSError, TimeoutError) as exc:
                delay = self._reconnect.failed()
                logger.warning(
                    "peer gateway unreachable; retrying",
                    extra={
                        "peer": self.state_peer_id,
                        "error": str(exc) or type(exc).__name__,
                        "retry_in_s": round(delay, 3),
                    },
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
            finally:
                self.session_ended(client)

    def stop(self) -> None:
        """Say BYE and end :meth:`run`."""
        self._stopping.set()
        if self._client is not None:
            self._client.close("gateway stopping")
