"""One peer's session at the gateway: feeds bytes to a sans-I/O ``Session``, acts on events."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from edgeswarm.transport.quic import SessionLink
from edgeswarm.wire import (
    Ack,
    ErrorCode,
    HelloReceived,
    ObservationsReceived,
    ProtocolViolation,
    Role,
    Session,
    SessionClosed,
    SessionConfig,
    StatusRequested,
    Welcome,
)

if TYPE_CHECKING:
    from .server import Gateway

log = logging.getLogger("edgeswarm.gateway")


class GatewayConnection:
    """Handler of one QUIC connection's session stream (a ``StreamHandler``)."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        config = gateway.config
        self.session = Session(
            SessionConfig(
                is_client=False,
                max_frame_bytes=config.max_frame_bytes,
                max_batch_agents=config.max_batch_agents,
                hello_timeout_s=config.hello_timeout_s,
            ),
            now=time.monotonic(),
        )
        self._link: SessionLink | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._open = False
        self.peer_id: str | None = None
        self.role: Role | None = None

    # StreamHandler
    def connection_made(self, link: SessionLink) -> None:
        self._link = link
        self._gateway.connection_opened(self)
        self._arm_timer()

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        if data:
            self.session.receive_data(data, time.monotonic())
        self._process()
        if end_stream and not self.session.closed:
            self.session.close(ErrorCode.NO_ERROR, "stream ended")
            self._process()

    def connection_lost(self, reason: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._session_ended()
        self._gateway.connection_closed(self)

    # internals
    def _process(self) -> None:
        gateway = self._gateway
        while (event := self.session.next_event()) is not None:
            match event:
                case ObservationsReceived(batch=batch, size=size):
                    assert self.peer_id is not None
                    gateway.stats.batch_accepted(self.peer_id, batch.seq, batch.count, size)
                    self.session.send(Ack(seq=batch.seq, accepted=batch.count))
                case HelloReceived(hello=hello):
                    self.peer_id, self.role = hello.peer_id, hello.role
                    self.session.accept(
                        Welcome(
                            version=hello.version,
                            session_id=uuid.uuid4().hex,
                            gateway_id=gateway.config.gateway_id,
                            max_frame_bytes=gateway.config.max_frame_bytes,
                            max_batch_agents=gateway.config.max_batch_agents,
                        )
                    )
                    self._open = True
                    gateway.stats.session_opened(hello.peer_id, hello.role.value, hello.agents)
                    log.info(
                        "session opened",
                        extra={
                            "peer_id": hello.peer_id,
                            "role": hello.role.value,
                            "agents": hello.agents,
                            "peer": self._peer,
                        },
                    )
                case StatusRequested():
                    self.session.send(gateway.stats.status(time.monotonic()))
                case ProtocolViolation(error=error):
                    gateway.stats.protocol_error(self.peer_id, error.error_code.name)
                    log.warning(
                        "protocol violation",
                        extra={
                            "peer_id": self.peer_id,
                            "peer": self._peer,
                            "code": error.error_code.name,
                            "error": str(error),
                            "fatal": error.fatal,
                        },
                    )
                case SessionClosed(code=code, reason=reason, by_peer=by_peer):
                    log.info(
                        "session closed",
                        extra={
                            "peer_id": self.peer_id,
                            "peer": self._peer,
                            "code": code,
                            "reason": reason,
                            "by_peer": by_peer,
                        },
                    )
                    self._session_ended()
                case _:
                    pass
        self._flush()

    @property
    def _peer(self) -> str:
        return self._link.peer if self._link is not None else "?"

    def _session_ended(self) -> None:
        if self._open and self.peer_id is not None and self.role is not None:
            self._open = False
            self._gateway.stats.session_closed(self.peer_id, self.role.value)

    def _flush(self) -> None:
        data = self.session.data_to_send()
        closed = self.session.closed
        if self._link is not None and (data or closed):
            self._link.send(data, end_stream=closed)
            if closed:
                self._link.close_connection(reason="session closed")
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.session.get_timer()
        if deadline is not None:
            delay = max(0.0, deadline - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timer(time.monotonic())
        self._process()

    def shutdown(self) -> None:
        """Say BYE (the gateway is going away)."""
        if not self.session.closed:
            self.session.close(ErrorCode.SHUTTING_DOWN, "gateway shutting down")
            self._process()
