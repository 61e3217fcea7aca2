"""The edge's side of a session: sends observation batches, tracks their acks.

``GatewayClient`` is the ``StreamHandler`` of the QUIC adapter; it owns the
client ``Session`` and turns its events into awaitable state: a window of
batches in flight (back-pressure), ack latencies, actions to apply, status.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from edgeswarm.telemetry import LatencyHistogram
from edgeswarm.transport.quic import SessionLink
from edgeswarm.wire import (
    AckReceived,
    Actions,
    ActionsReceived,
    ErrorCode,
    ErrorReceived,
    Hello,
    ObservationBatch,
    ProtocolViolation,
    Session,
    SessionClosed,
    SessionConfig,
    Status,
    StatusReceived,
    StatusRequest,
    Welcome,
    Welcomed,
)

log = logging.getLogger("edgeswarm.edge")


class SessionEndedError(ConnectionError):
    """The session with the gateway ended while we were waiting on it."""


@dataclass
class DeliveryCounters:
    """What an edge sent and what the gateway acknowledged."""

    sent_batches: int = 0
    sent_observations: int = 0
    acked_batches: int = 0
    acked_observations: int = 0
    errors_received: int = 0


class GatewayClient:
    """Client of one gateway session (a ``StreamHandler``)."""

    def __init__(self, hello: Hello, *, window: int = 64) -> None:
        self.hello = hello
        self.window = window
        self.session = Session(SessionConfig(is_client=True), now=time.monotonic())
        self.counters = DeliveryCounters()
        self.latency = LatencyHistogram()
        self.actions: deque[Actions] = deque(maxlen=1024)
        self.welcome: Welcome | None = None
        self.closed_reason: str | None = None
        self._link: SessionLink | None = None
        self._in_flight: dict[int, tuple[float, int]] = {}
        self._changed = asyncio.Event()
        self._status: asyncio.Future[Status] | None = None

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet acknowledged."""
        return len(self._in_flight)

    # StreamHandler
    def connection_made(self, link: SessionLink) -> None:
        self._link = link
        self.session.hello(self.hello)
        self._flush()

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        if data:
            self.session.receive_data(data, time.monotonic())
        self._process()
        if end_stream and self.closed_reason is None:
            self._ended("gateway ended the stream")

    def connection_lost(self, reason: str) -> None:
        self._ended(reason)

    # API
    async def wait_welcomed(self, timeout: float = 10.0) -> Welcome:
        """Wait until the gateway accepted our HELLO."""
        async with asyncio.timeout(timeout):
            while self.welcome is None:
                self._raise_if_closed()
                await self._wait_change()
        return self.welcome

    async def send_batch(self, batch: ObservationBatch) -> None:
        """Send ``batch`` once fewer than ``window`` batches are in flight."""
        while len(self._in_flight) >= self.window:
            self._raise_if_closed()
            await self._wait_change()
        self._raise_if_closed()
        self.session.send(batch)
        self._in_flight[batch.seq] = (time.monotonic(), batch.count)
        self.counters.sent_batches += 1
        self.counters.sent_observations += batch.count
        self._flush()

    async def drain(self, timeout: float) -> bool:
        """Wait until every sent batch is acknowledged; False on timeout or close."""
        try:
            async with asyncio.timeout(timeout):
                while self._in_flight:
                    self._raise_if_closed()
                    await self._wait_change()
        except (TimeoutError, SessionEndedError):
            return False
        return True

    async def request_status(self, timeout: float = 10.0) -> Status:
        """Ask the gateway for its status."""
        self._raise_if_closed()
        self._status = asyncio.get_running_loop().create_future()
        self.session.send(StatusRequest())
        self._flush()
        async with asyncio.timeout(timeout):
            return await self._status

    def close(self, reason: str = "") -> None:
        """Say BYE."""
        if not self.session.closed:
            self.session.close(ErrorCode.NO_ERROR, reason)
            self._process()

    # internals
    async def _wait_change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    def _raise_if_closed(self) -> None:
        if self.closed_reason is not None:
            raise SessionEndedError(self.closed_reason)

    def _ended(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            if self._status is not None and not self._status.done():
                self._status.set_exception(SessionEndedError(reason))
        self._changed.set()

    def _process(self) -> None:
        now = time.monotonic()
        while (event := self.session.next_event()) is not None:
            match event:
                case AckReceived(ack=ack):
                    sent = self._in_flight.pop(ack.seq, None)
                    if sent is not None:
                        self.latency.record(now - sent[0])
                        self.counters.acked_batches += 1
                        self.counters.acked_observations += ack.accepted
                case Welcomed(welcome=welcome):
                    self.welcome = welcome
                case ActionsReceived(actions=actions):
                    self.actions.append(actions)
                case StatusReceived(status=status):
                    if self._status is not None and not self._status.done():
                        self._status.set_result(status)
                case ErrorReceived(error=error):
                    self.counters.errors_received += 1
                    log.warning(
                        "gateway reported an error",
                        extra={"code": error.code, "error": error.message, "seq": error.seq},
                    )
                case ProtocolViolation(error=error):
                    log.warning(
                        "gateway broke the protocol",
                        extra={"code": error.error_code.name, "error": str(error)},
                    )
                case SessionClosed(code=code, reason=reason, by_peer=by_peer):
                    who = "gateway" if by_peer else "edge"
                    self._ended(f"{who} closed the session: {reason or code}")
                case _:
                    pass
        self._changed.set()
        self._flush()

    def _flush(self) -> None:
        data = self.session.data_to_send()
        if self._link is not None and data:
            self._link.send(data, end_stream=self.session.closed)
