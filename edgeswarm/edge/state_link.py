"""The edge's share of the swarm state: a local document the policies write to.

Wasm policies reach the swarm state through the host imports (counter add,
set add, flag read); :class:`DocumentSwarmState` puts those on a local
:class:`~edgeswarm.state.SwarmDocument` at once, so a policy never waits on
the network. :class:`StateLink` keeps that document in sync with the gateway
over the uplink's session (it is the session's ``StateHandler``):

- when a session becomes READY it sends STATE_SYNC with the document's state
  vector, and answers the gateway's STATE_SYNC with what the gateway lacks:
  after a long disconnect only the missing part travels, never the whole
  document;
- every ``interval_s`` (:meth:`StateLink.poll`) everything the gateway lacks
  (the edits of the interval, of any number of ops) goes as ONE STATE_UPDATE;
- updates from the gateway (other edges' and gateways' changes) are merged.

The document is persisted in ``directory`` (snapshot + update log), so an
edge that restarts keeps its view and its own contributions; every start
writes as a new incarnation (:func:`~edgeswarm.state.open_document`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from edgeswarm.client.session import GatewayClient
from edgeswarm.resource import Resource
from edgeswarm.state import (
    InvalidKey,
    StateSession,
    StoreError,
    StoreFsyncPolicy,
    SwarmDocument,
    UpdateBatcher,
    open_document,
)
from edgeswarm.wire import FEATURE_STATE, ErrorCode, StateSyncRequested, StateUpdateReceived

from .policy.swarm_state import SwarmSnapshot, SwarmStateRefusedError, key_problem

__all__ = ["DEFAULT_GROUP", "DocumentSwarmState", "StateLink"]

logger = logging.getLogger("edgeswarm.edge")

DEFAULT_GROUP = "swarm"
"""Group of keys a policy declares without one (``"anomalies"`` -> ``"swarm/anomalies"``)."""


class DocumentSwarmState:
    """The :class:`~edgeswarm.edge.policy.swarm_state.SwarmState` seam on a :class:`SwarmDocument`.

    Keys are ``group/name``; a key without a group is put in
    :data:`DEFAULT_GROUP`. A key or item the document refuses is counted, logged
    (one warning per key) and raised as
    :class:`~edgeswarm.edge.policy.swarm_state.SwarmStateRefusedError`, which the host
    import turns into an error code for the policy.
    """

    def __init__(self, document: SwarmDocument) -> None:
        self.document = document
        self._refused: set[str] = set()
        self.refused_ops = 0
        """Operations dropped because their key or item was refused."""

    @staticmethod
    def scoped(key: str) -> str:
        """``key`` with its group (:data:`DEFAULT_GROUP` when it has none)."""
        return key if "/" in key else f"{DEFAULT_GROUP}/{key}"

    def _refuse(self, key: str, error: InvalidKey) -> SwarmStateRefusedError:
        self.refused_ops += 1
        if key not in self._refused and len(self._refused) < 1024:
            self._refused.add(key)
            logger.warning("swarm state key refused", extra={"key": key, "error": str(error)})
        part: Literal["key", "item"] = "key" if key_problem(key) is not None else "item"
        return SwarmStateRefusedError(str(error), part=part)

    def counter_add(self, key: str, delta: int) -> None:
        try:
            self.document.counter_add(self.scoped(key), int(delta))
        except InvalidKey as exc:
            raise self._refuse(key, exc) from exc

    def set_add(self, key: str, item: str) -> None:
        try:
            self.document.set_add(self.scoped(key), item)
        except InvalidKey as exc:
            raise self._refuse(key, exc) from exc

    def flag_get(self, key: str) -> bool:
        try:
            return self.document.flag_get(self.scoped(key)) is True
        except InvalidKey as exc:
            raise self._refuse(key, exc) from exc

    def flag_set(self, key: str, value: bool) -> None:
        try:
            self.document.flag_set(self.scoped(key), value)
        except InvalidKey as exc:
            raise self._refuse(key, exc) from exc

    def snapshot(self) -> SwarmSnapshot:
        plain = self.document.snapshot()
        return SwarmSnapshot(
            counters=dict(plain["counters"]),
            sets={key: frozenset(items) for key, items in plain["sets"].items()},
            flags=dict(plain["flags"]),
        )


class StateLink(Resource):
    """The edge's document, its store, and its sync with the gateway."""

    features = (FEATURE_STATE,)
    """What to put in HELLO ``features``."""

    def __init__(
        self,
        directory: Path,
        *,
        writer_id: str,
        interval_s: float = 0.1,
        fsync: StoreFsyncPolicy = "interval",
        on_store_error: Callable[[], None] | None = None,
    ) -> None:
        self.document, self.store, self.load_report = open_document(
            directory, writer_id, fsync=fsync
        )
        self.interval_s = interval_s
        """Longest time an edit waits before it is sent (the batching interval)."""
        self.on_store_error = on_store_error
        """Called when the local store cannot be written (logged too; the edge goes on:
        its document keeps the edits and the gateway gets them)."""
        self.swarm = DocumentSwarmState(self.document)
        """What the policies' host imports write to."""
        self._batcher = UpdateBatcher(self.document, interval_s=interval_s)
        self._client: GatewayClient | None = None
        self._session: StateSession | None = None
        self.updates_sent = 0
        """STATE_UPDATE frames sent (handshake replies included)."""
        self.updates_received = 0
        """STATE_UPDATE frames merged."""
        self.updates_refused = 0
        """Malformed updates or state vectors from the gateway."""

    @property
    def synced(self) -> bool:
        """Whether the gateway's state vector is known in the current session."""
        return self._session is not None and self._session.synced

    def attach(self, client: GatewayClient) -> None:
        """Make this link the state handler of ``client`` (the uplink's ``on_client``)."""
        client.state_handler = self

    # StateHandler
    def session_ready(self, client: GatewayClient) -> None:
        gateway_id = client.welcome.gateway_id if client.welcome is not None else "gateway"
        self._client = client
        self._session = StateSession(
            self.document,
            peer_id=gateway_id,
            on_update=self.store.append,
            on_refused=self._refused,
            own_writes_only=True,  # a gateway takes from an edge only what it wrote
            on_store_error=lambda error: self._store_failed(error),
        )
        client.send_state(self._session.sync_request())

    def state_received(
        self, client: GatewayClient, event: StateSyncRequested | StateUpdateReceived
    ) -> None:
        session = self._session
        if session is None or client is not self._client:
            return
        sent, merged = session.updates_sent, session.updates_merged
        for frame in session.receive(event):
            client.send_state(frame)
        self.updates_sent += session.updates_sent - sent
        self.updates_received += session.updates_merged - merged

    def session_ended(self, client: GatewayClient) -> None:
        if client is self._client:
            self._client, self._session = None, None

    # batching
    def poll(self) -> bool:
        """Log our own edits, send the gateway what it lacks; whether an update went out."""
        own = self._batcher.flush()
        if own is not None:
            try:
                self.store.append(own)
                if self.store.needs_compaction:
                    self.store.compact(self.document)
            except StoreError as exc:
                self._store_failed(exc)
        client, session = self._client, self._session
        if client is None or session is None:
            return False
        frame = session.data_to_send()
        if frame is None:
            return False
        client.send_state(frame)
        self.updates_sent += 1
        return True

    async def run(self) -> None:
        """Call :meth:`poll` every ``interval_s`` until cancelled."""
        while True:
            self.poll()
            await asyncio.sleep(self.interval_s)

    async def flush(self, wait_s: float = 0.05) -> None:
        """Send what is pending now and give it ``wait_s`` to leave (before a BYE)."""
        if self.poll():
            await asyncio.sleep(wait_s)

    def close(self) -> None:
        """Log the last edits, write a snapshot, close the store."""
        self._client, self._session = None, None
        try:
            own = self._batcher.flush()
            if own is not None:
                self.store.append(own)
            self.store.compact(self.document)
        except StoreError as exc:
            self._store_failed(exc)
        finally:
            try:
                self.store.close()
            except StoreError as exc:
                self._store_failed(exc)

    def _store_failed(self, error: StoreError) -> None:
        logger.error("swarm state store failed", extra={"error": str(error)})
        if self.on_store_error is not None:
            self.on_store_error()

    def _refused(self, peer_id: str, code: ErrorCode) -> None:
        self.updates_refused += 1
