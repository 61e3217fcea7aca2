"""Raw protocol peers for tests: a client (RawPeer) and a gateway side (RawGateway) that
send any bytes or frames and record everything they receive."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import UnionType
from typing import Any, Protocol, TypeVar

from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.transport.quic import SessionLink
from edgeswarm.wire import (
    PROTOCOL_VERSION,
    Auth,
    AuthReceived,
    Bye,
    Challenge,
    Error,
    ErrorCode,
    Event,
    Frame,
    FrameReader,
    Hello,
    HelloReceived,
    Role,
    Session,
    SessionConfig,
    Welcome,
    auth_message,
    decode_payload,
    encode_frame,
)

F = TypeVar("F")


class RawPeer:
    """A session-stream handler that speaks the protocol by hand."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self.link: SessionLink | None = None
        self.changed = asyncio.Event()
        self.lost: str | None = None

    def connection_made(self, link: SessionLink) -> None:
        self.link = link

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        self.reader.feed(data)
        while (payload := self.reader.next_payload()) is not None:
            self.frames.append(decode_payload(payload))
        self.changed.set()

    def connection_lost(self, reason: str) -> None:
        self.lost = reason
        self.changed.set()

    def send(self, data: bytes) -> None:
        assert self.link is not None
        self.link.send(data)

    async def wait_for(self, kind: type[F] | UnionType, timeout: float = 10.0) -> F:
        async with asyncio.timeout(timeout):
            while True:
                for frame in self.frames:
                    if isinstance(frame, kind):
                        return frame
                self.changed.clear()
                await self.changed.wait()

    async def handshake(
        self,
        key: KeyPair,
        peer_id: str,
        *,
        role: Role = Role.EDGE,
        join_token: str | None = None,
        auth: Auth | None = None,
        features: tuple[str, ...] = (),
        state_incarnation: int | None = None,
        seq_epoch: int | None = None,
    ) -> tuple[Hello, Challenge, Auth] | None:
        """HELLO, wait for CHALLENGE, answer with ``auth`` or a correct signature.

        None when the gateway refused the HELLO (ERROR and BYE, no CHALLENGE).
        """
        hello = Hello(
            version=PROTOCOL_VERSION,
            role=role,
            peer_id=peer_id,
            public_key=key.public_key,
            agents=1,
            join_token=join_token,
            features=features,
            state_incarnation=state_incarnation,  # None (the default): the key is not sent
            seq_epoch=seq_epoch,
        )
        self.send(encode_frame(hello))
        first = await self.wait_for(Challenge | Bye)
        if isinstance(first, Bye):
            return None
        challenge = first
        if auth is None:
            message = auth_message(
                nonce=challenge.nonce, gateway_id=challenge.gateway_id, hello=hello
            )
            auth = Auth(signature=key.sign(message))
        self.send(encode_frame(auth))
        return hello, challenge, auth


class Reachable(Protocol):
    """Where a gateway listens and the CA it is pinned to (a running gateway)."""

    port: int
    ca: Path


async def attempt(gateway: Reachable, key: KeyPair, peer_id: str, **kwargs: Any) -> RawPeer:
    """One handshake with ``key`` as ``peer_id``; the peer once WELCOME or BYE arrived."""
    peer = RawPeer()
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        await peer.handshake(key, peer_id, **kwargs)
        async with asyncio.timeout(10):
            while not any(isinstance(f, Welcome | Bye) for f in peer.frames):
                peer.changed.clear()
                await peer.changed.wait()
    return peer


def welcomed(peer: RawPeer) -> bool:
    """Whether the gateway let the peer in."""
    return any(isinstance(f, Welcome) for f in peer.frames)


def refusal(peer: RawPeer) -> ErrorCode:
    """The code of the one ERROR a refused peer got (asserts it was refused, with BYE)."""
    assert not welcomed(peer), "the peer was let in"
    [error] = [f for f in peer.frames if isinstance(f, Error)]
    assert any(isinstance(f, Bye) for f in peer.frames)
    return ErrorCode(error.code)


class RawGateway:
    """The gateway's side of a session, by hand (a server ``StreamHandler``): it
    welcomes any HELLO with the features asked for, records every event, and sends
    whatever frame a test gives it, well-formed or not. For testing what a client
    does with a gateway that misbehaves; its own checks run in the real ``Session``."""

    def __init__(self) -> None:
        self.session = Session(SessionConfig(is_client=False), now=time.monotonic())
        self.events: list[Event] = []
        self.link: SessionLink | None = None
        self.changed = asyncio.Event()

    def connection_made(self, link: SessionLink) -> None:
        self.link = link

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        if data:
            self.session.receive_data(data, time.monotonic())
        while (event := self.session.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, HelloReceived):
                self.session.challenge(Challenge(nonce=bytes(32), gateway_id="raw-gateway"))
            elif isinstance(event, AuthReceived):
                hello = self.session.peer_hello
                assert hello is not None
                self.session.accept(
                    Welcome(
                        version=PROTOCOL_VERSION,
                        session_id="raw",
                        gateway_id="raw-gateway",
                        max_frame_bytes=1 << 20,
                        max_batch_agents=1 << 16,
                        credit=16,
                        features=hello.features,
                    )
                )
        self.flush()
        self.changed.set()

    def connection_lost(self, reason: str) -> None:
        self.changed.set()

    def send(self, frame: Frame) -> None:
        """Queue ``frame`` in the session and send it now."""
        self.session.send(frame)
        self.flush()

    def flush(self) -> None:
        data = self.session.data_to_send()
        if data and self.link is not None:
            self.link.send(data)

    async def wait_for(self, kind: type[F] | UnionType, after: int = 0, timeout: float = 10.0) -> F:
        """The first event of ``kind`` at index ``after`` or later."""
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events[after:]:
                    if isinstance(event, kind):
                        return event
                self.changed.clear()
                await self.changed.wait()
