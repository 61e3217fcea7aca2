"""The QUIC adapter over real loopback QUIC, on both stacks."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from edgeswarm.transport import quic
from edgeswarm.transport.tls import CertificatePaths, create_certificates

pytest.importorskip("qh3")

STACKS = pytest.mark.parametrize("stack", ["aioquic", "qh3"])


class Recorder:
    """A StreamHandler that keeps what it gets; echoes when asked."""

    def __init__(self, *, echo: bool = False) -> None:
        self.echo = echo
        self.link: quic.SessionLink | None = None
        self.data = bytearray()
        self.datagrams: list[bytes] = []
        self.lost: str | None = None
        self.changed = asyncio.Event()

    def connection_made(self, link: quic.SessionLink) -> None:
        self.link = link

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        self.data += data
        if self.echo and self.link is not None and data:
            self.link.send(data)
        self.changed.set()

    def datagram_received(self, data: bytes) -> None:
        self.datagrams.append(data)
        if self.echo and self.link is not None:
            self.link.send_datagram(data)
        self.changed.set()

    def connection_lost(self, reason: str) -> None:
        self.lost = reason
        self.changed.set()

    async def wait(self, predicate, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class OldHandler:
    """A handler written before datagrams existed."""

    def connection_made(self, link: quic.SessionLink) -> None:
        self.link = link

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        pass

    def connection_lost(self, reason: str) -> None:
        pass


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificatePaths:
    return create_certificates(tmp_path_factory.mktemp("tls"))


async def _serve(
    certs: CertificatePaths, stack: str, handlers: list[Recorder], **kwargs: object
) -> quic.QuicListener:
    def factory() -> Recorder:
        handler = Recorder(echo=True)
        handlers.append(handler)
        return handler

    return await quic.serve(
        "127.0.0.1",
        0,
        cert=certs.cert,
        key=certs.key,
        handler_factory=factory,
        stack=stack,
        **kwargs,  # type: ignore[arg-type]
    )


@STACKS
async def test_stream_round_trip(certs: CertificatePaths, stack: str) -> None:
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    client = Recorder()
    payload = bytes(range(256)) * 1000
    try:
        async with quic.connect(
            "127.0.0.1", listener.port, ca_file=certs.ca, handler=client, stack=stack
        ) as link:
            link.send(payload)
            await client.wait(lambda: len(client.data) >= len(payload))
            assert bytes(client.data) == payload
            assert served[0].link is not None
            assert served[0].link.peer.startswith("127.0.0.1:")
    finally:
        listener.close()
    await served[0].wait(lambda: served[0].lost is not None)


@STACKS
async def test_datagrams_negotiated_and_echoed(certs: CertificatePaths, stack: str) -> None:
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    client = Recorder()
    try:
        async with quic.connect(
            "127.0.0.1", listener.port, ca_file=certs.ca, handler=client, stack=stack
        ) as link:
            limit = link.max_datagram_payload
            assert limit is not None  # pins the private attribute in stacks.py
            assert 1000 <= limit < quic.TransportSettings().max_datagram_size
            assert link.send_datagram(b"x" * limit)
            assert not link.send_datagram(b"x" * (limit + 1))
            link.send(b"open")  # the server binds its handler on the first stream bytes
            await client.wait(lambda: len(client.data) >= 4)
            assert link.send_datagram(b"ping")
            await client.wait(lambda: b"ping" in client.datagrams)
    finally:
        listener.close()


@STACKS
async def test_datagrams_refused_when_not_negotiated(certs: CertificatePaths, stack: str) -> None:
    served: list[Recorder] = []
    off = quic.TransportSettings(max_datagram_frame_size=None)
    listener = await _serve(certs, stack, served, settings=off)
    client = Recorder()
    try:
        async with quic.connect(
            "127.0.0.1", listener.port, ca_file=certs.ca, handler=client, stack=stack
        ) as link:
            assert link.max_datagram_payload is None
            assert not link.send_datagram(b"ping")
            link.send(b"still works")
            await client.wait(lambda: len(client.data) >= 11)
    finally:
        listener.close()


@STACKS
async def test_old_handler_ignores_datagrams(certs: CertificatePaths, stack: str) -> None:
    old: list[OldHandler] = []

    def factory() -> OldHandler:
        old.append(OldHandler())
        return old[-1]

    listener = await quic.serve(
        "127.0.0.1", 0, cert=certs.cert, key=certs.key, handler_factory=factory, stack=stack
    )
    client = Recorder()
    try:
        async with quic.connect(
            "127.0.0.1", listener.port, ca_file=certs.ca, handler=client, stack=stack
        ) as link:
            link.send(b"hello")
            assert link.send_datagram(b"nobody listens")
            await asyncio.sleep(0.1)
            assert link.send_datagram(b"still nobody")
            await asyncio.sleep(0.1)
            assert client.lost is None
    finally:
        listener.close()


@STACKS
async def test_second_connection_resumes_with_ticket_store(
    certs: CertificatePaths, stack: str
) -> None:
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    tickets = quic.TicketStore()
    try:
        for attempt in range(2):
            client = Recorder()
            async with quic.connect(
                "127.0.0.1",
                listener.port,
                ca_file=certs.ca,
                handler=client,
                stack=stack,
                tickets=tickets,
            ) as link:
                assert link.resumed is (attempt == 1)
                link.send(b"abc")
                await client.wait(lambda c=client: len(c.data) >= 3)
            assert len(tickets) == 1
    finally:
        listener.close()


@STACKS
async def test_connect_to_dead_port_fails_fast(certs: CertificatePaths, stack: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        async with quic.connect(
            "127.0.0.1",
            port,
            ca_file=certs.ca,
            handler=Recorder(),
            stack=stack,
            connect_timeout=3.0,
        ):
            pass
    assert time.monotonic() - start < 3.5


@STACKS
async def test_connect_to_silent_peer_times_out(certs: CertificatePaths, stack: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        start = time.monotonic()
        with pytest.raises(quic.ConnectTimeoutError):
            async with quic.connect(
                "127.0.0.1",
                silent.getsockname()[1],
                ca_file=certs.ca,
                handler=Recorder(),
                stack=stack,
                connect_timeout=0.5,
            ):
                pass
        assert time.monotonic() - start < 1.5


@STACKS
async def test_wrong_ca_is_refused(certs: CertificatePaths, stack: str, tmp_path: Path) -> None:
    other = create_certificates(tmp_path / "other")
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    start = time.monotonic()
    try:
        with pytest.raises(ConnectionError):
            async with quic.connect(
                "127.0.0.1",
                listener.port,
                ca_file=other.ca,
                handler=Recorder(),
                stack=stack,
                connect_timeout=3.0,
            ):
                pass
    finally:
        listener.close()
    assert time.monotonic() - start < 3.5


@STACKS
async def test_garbage_datagrams_do_not_break_the_server(
    certs: CertificatePaths, stack: str
) -> None:
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    junk = [
        b"",
        b"\x00",
        b"\xff" * 7,
        b"\xc0" + b"\x00" * 1300,
        b"\x40" * 1500,
        b"\xc0\x00\x00\x00\x01\x08" + b"\x01" * 1300,  # Initial with no keys
        b"\xc0\x0a\x0a\x0a\x0a\x08" + b"\x02" * 1300,
    ]  # unknown version
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as vandal:
            for data in junk * 20:
                vandal.sendto(data, ("127.0.0.1", listener.port))
        await asyncio.sleep(0.05)
        client = Recorder()
        async with quic.connect(
            "127.0.0.1", listener.port, ca_file=certs.ca, handler=client, stack=stack
        ) as link:
            link.send(b"ok")
            await client.wait(lambda: bytes(client.data) == b"ok")
    finally:
        listener.close()


def test_default_stack_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(quic.STACK_ENV, raising=False)
    assert quic.default_stack() == quic.DEFAULT_STACK
    monkeypatch.setenv(quic.STACK_ENV, "aioquic")
    assert quic.default_stack() == "aioquic"


async def test_unknown_stack_is_refused(certs: CertificatePaths) -> None:
    with pytest.raises(ValueError, match="unknown QUIC stack"):
        await quic.serve(
            "127.0.0.1",
            0,
            cert=certs.cert,
            key=certs.key,
            handler_factory=Recorder,
            stack="quiche",
        )


async def test_aioquic_refuses_packets_it_cannot_build(certs: CertificatePaths) -> None:
    huge = quic.TransportSettings(max_datagram_size=32768)
    with pytest.raises(ValueError, match="aioquic"):
        await quic.serve(
            "127.0.0.1",
            0,
            cert=certs.cert,
            key=certs.key,
            handler_factory=Recorder,
            stack="aioquic",
            settings=huge,
        )


async def test_large_datagrams_opt_in_on_qh3(certs: CertificatePaths) -> None:
    big = quic.TransportSettings(max_datagram_size=8192)
    served: list[Recorder] = []
    listener = await _serve(certs, "qh3", served, settings=big)
    client = Recorder()
    payload = b"z" * 200_000
    try:
        async with quic.connect(
            "127.0.0.1",
            listener.port,
            ca_file=certs.ca,
            handler=client,
            stack="qh3",
            settings=big,
        ) as link:
            link.send(payload)
            await client.wait(lambda: len(client.data) >= len(payload))
            assert bytes(client.data) == payload
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("server_stack", "client_stack"),
    [
        ("aioquic", "qh3"),
        pytest.param(
            "qh3",
            "aioquic",
            marks=pytest.mark.xfail(
                strict=False,
                reason="qh3 2.1.0 server loses its first flight to aioquic 1.7.2 clients "
                "('packet builder capacity exhausted'); remove when a qh3 release fixes it",
            ),
        ),
    ],
)
async def test_stacks_interoperate(
    certs: CertificatePaths, server_stack: str, client_stack: str
) -> None:
    served: list[Recorder] = []
    listener = await _serve(certs, server_stack, served)
    client = Recorder()
    try:
        async with quic.connect(
            "127.0.0.1",
            listener.port,
            ca_file=certs.ca,
            handler=client,
            stack=client_stack,
            connect_timeout=2.0,
        ) as link:
            link.send(b"both ways" * 1000)
            await client.wait(lambda: len(client.data) >= 9000)
    finally:
        listener.close()
