"""The QUIC adapter over real loopback QUIC, on both stacks."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import pytest

from edgeswarm.transport import quic
from edgeswarm.transport.tls import CertificatePaths, create_certificates

STACKS = pytest.mark.parametrize("stack", ["aioquic", "qh3"])
CONNECT_TIMEOUT_S = 3.0
REFUSED_WITHIN_S = 1.0
"""A refusal (ICMP port unreachable, a bad certificate) ends a connect within this;
a connect that missed it would wait for the whole ``CONNECT_TIMEOUT_S``."""
INTEROP_HANDSHAKES = 8


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
    """A handler written before datagrams existed (it echoes its stream)."""

    def connection_made(self, link: quic.SessionLink) -> None:
        self.link = link

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        if data:
            self.link.send(data)

    def connection_lost(self, reason: str) -> None:
        pass


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificatePaths:
    return create_certificates(tmp_path_factory.mktemp("tls"))


async def _serve(
    certs: CertificatePaths,
    stack: str,
    handlers: list[Recorder],
    *,
    port: int = 0,
    **kwargs: object,
) -> quic.QuicListener:
    def factory() -> Recorder:
        handler = Recorder(echo=True)
        handlers.append(handler)
        return handler

    return await quic.serve(
        "127.0.0.1",
        port,
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
            # each echo comes back after the datagram sent before it reached the handler
            assert link.send_datagram(b"nobody listens")
            link.send(b"ping-1")
            await client.wait(lambda: bytes(client.data) == b"ping-1")
            assert link.send_datagram(b"still nobody")
            link.send(b"ping-2")
            await client.wait(lambda: bytes(client.data) == b"ping-1ping-2")
            assert client.lost is None
            assert client.datagrams == []  # the old handler echoes no datagram
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
            connect_timeout=CONNECT_TIMEOUT_S,
        ):
            pass
    # The ICMP port-unreachable ends the attempt: far sooner than the connect timeout.
    assert time.monotonic() - start < REFUSED_WITHIN_S


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
                connect_timeout=CONNECT_TIMEOUT_S,
            ):
                pass
    finally:
        listener.close()
    # The client refuses the certificate at once: far sooner than the connect timeout.
    assert time.monotonic() - start < REFUSED_WITHIN_S


@STACKS
@pytest.mark.parametrize("content", [None, b"", b"not a certificate\n"])
async def test_a_ca_file_that_holds_no_certificate_is_named_at_once(
    certs: CertificatePaths, stack: str, tmp_path: Path, content: bytes | None
) -> None:
    ca_file = tmp_path / "ca.crt"
    if content is not None:
        ca_file.write_bytes(content)
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    start = time.monotonic()
    try:
        with pytest.raises(quic.CertificateFileError, match=str(ca_file)):
            async with quic.connect(
                "127.0.0.1",
                listener.port,
                ca_file=ca_file,
                handler=Recorder(),
                stack=stack,
                connect_timeout=5.0,
            ):
                pass
    finally:
        listener.close()
    assert time.monotonic() - start < 1.0  # before any packet: no wait for a timeout
    assert served == []


@STACKS
async def test_a_port_in_use_is_a_listen_error_naming_the_address(
    certs: CertificatePaths, stack: str
) -> None:
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    try:
        with pytest.raises(quic.ListenError, match=f"127.0.0.1:{listener.port}: .*in use"):
            await _serve(certs, stack, served, port=listener.port)
    finally:
        listener.close()


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
        ("qh3", "aioquic"),
    ],
)
async def test_stacks_interoperate(
    certs: CertificatePaths, server_stack: str, client_stack: str
) -> None:
    """qh3 2.1.0 fails its first flight to an aioquic client ('packet builder capacity
    exhausted'); the server keeps the connection and answers the client's retransmitted
    Initial about a second later (link.MAX_TRANSMIT_FAILURES). Several handshakes: the
    library bug hits most but not all of them, so one lucky handshake proves nothing.
    The adapter also sends the datagrams qh3 built before raising
    (stacks.datagrams_to_send)."""
    served: list[Recorder] = []
    listener = await _serve(certs, server_stack, served)
    try:
        for _ in range(INTEROP_HANDSHAKES):
            client = Recorder()
            async with quic.connect(
                "127.0.0.1",
                listener.port,
                ca_file=certs.ca,
                handler=client,
                stack=client_stack,
                connect_timeout=5.0,  # the aioquic client's first probe timeout, then some
            ) as link:
                link.send(b"both ways" * 1000)
                await client.wait(lambda c=client: len(c.data) >= 9000)
    finally:
        listener.close()


class HelloOnMade(Recorder):
    """Sends its first bytes from ``connection_made``, like the session's HELLO."""

    def __init__(self, hello: bytes) -> None:
        super().__init__()
        self.hello = hello

    def connection_made(self, link: quic.SessionLink) -> None:
        super().connection_made(link)
        link.send(self.hello)


@STACKS
async def test_zero_rtt_hello_rides_in_early_data(certs: CertificatePaths, stack: str) -> None:
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    tickets = quic.TicketStore()
    key = (stack, "127.0.0.1", listener.port, "127.0.0.1")
    try:
        for attempt in range(3):
            used = tickets.get(key)
            client = HelloOnMade(b"hello %d" % attempt)
            async with quic.connect(
                "127.0.0.1",
                listener.port,
                ca_file=certs.ca,
                handler=client,
                stack=stack,
                tickets=tickets,
                early_data=True,
            ) as link:
                await client.wait(lambda c=client: bytes(c.data) == c.hello)  # echoed
                assert link.resumed is (attempt > 0)
                assert link.early_data_accepted is (attempt > 0)
                # Tickets are single use: hold the connection until the next one arrived.
                async with asyncio.timeout(5):
                    while tickets.get(key) is used:
                        await asyncio.sleep(0.01)
    finally:
        listener.close()


@STACKS
async def test_zero_rtt_refused_by_a_restarted_server_still_delivers(
    certs: CertificatePaths, stack: str
) -> None:
    """A ticket the server no longer knows: early data is refused and sent again in 1-RTT."""
    tickets = quic.TicketStore()
    served: list[Recorder] = []
    first = await _serve(certs, stack, served)
    port = first.port
    try:
        async with quic.connect(
            "127.0.0.1", port, ca_file=certs.ca, handler=Recorder(), stack=stack, tickets=tickets
        ) as link:
            link.send(b"x")
            await served_data(served, b"x")
    finally:
        first.close()
    assert len(tickets) == 1
    served.clear()
    second = await _serve(certs, stack, served, port=port)  # same address, new ticket keys
    try:
        client = HelloOnMade(b"hello again")
        async with quic.connect(
            "127.0.0.1",
            port,
            ca_file=certs.ca,
            handler=client,
            stack=stack,
            tickets=tickets,
            early_data=True,
        ) as link:
            await client.wait(lambda: bytes(client.data) == b"hello again")
            assert not link.early_data_accepted
            assert not link.resumed
    finally:
        second.close()


async def served_data(served: list[Recorder], data: bytes) -> None:
    async with asyncio.timeout(5):
        while not served or bytes(served[0].data) != data:
            await asyncio.sleep(0.01)


@STACKS
async def test_early_data_without_ticket_is_a_normal_connect(
    certs: CertificatePaths, stack: str
) -> None:
    served: list[Recorder] = []
    listener = await _serve(certs, stack, served)
    client = HelloOnMade(b"first")
    try:
        async with quic.connect(
            "127.0.0.1",
            listener.port,
            ca_file=certs.ca,
            handler=client,
            stack=stack,
            tickets=quic.TicketStore(),
            early_data=True,
        ) as link:
            await client.wait(lambda: bytes(client.data) == b"first")
            assert not link.resumed
            assert not link.early_data_accepted
    finally:
        listener.close()


async def test_gateway_actions_go_as_datagrams_with_stream_fallback(tmp_path: Path) -> None:
    """Small ACTIONS leave as one datagram, large ones (or no datagrams) on the stream."""
    import numpy as np

    from edgeswarm.client.session import GatewayClient
    from edgeswarm.gateway import Gateway, GatewayConfig
    from edgeswarm.identity import KeyPair
    from edgeswarm.wire import PROTOCOL_VERSION, Actions, Hello, LocalProtocolError, Role

    stack = quic.default_stack()
    gateway = Gateway(GatewayConfig(port=0, metrics_port=None, data_dir=tmp_path, stack=stack))
    key = KeyPair.generate()
    gateway.peers.add_peer(key.public_key, "edge-a", Role.EDGE)
    await gateway.start()
    assert gateway.ca_file is not None

    def actions(n: int) -> Actions:
        return Actions(
            tick=n,
            agent_ids=np.arange(n, dtype=np.uint32),
            actions=np.ones((n, 2), dtype=np.float32),
        )

    hello = Hello(
        version=PROTOCOL_VERSION,
        role=Role.EDGE,
        peer_id="edge-a",
        public_key=key.public_key,
        agents=4,
    )
    client = GatewayClient(hello, key)
    try:
        async with quic.connect(
            "127.0.0.1", gateway.port, ca_file=gateway.ca_file, handler=client, stack=stack
        ):
            await client.wait_welcomed()
            async with asyncio.timeout(5):
                while not any(c.peer_id == "edge-a" for c in gateway.connections):
                    await asyncio.sleep(0.01)
            [connection] = [c for c in gateway.connections if c.peer_id == "edge-a"]
            assert connection.send_actions(actions(4)) is True  # ~100 bytes: a datagram
            assert connection.send_actions(actions(2000)) is False  # ~24 KB: the stream
            async with asyncio.timeout(5):
                while len(client.actions) < 2:
                    await asyncio.sleep(0.01)
            assert client.counters.datagram_actions == 1
            assert sorted(a.agent_ids.shape[0] for a in client.actions) == [4, 2000]
            np.testing.assert_array_equal(client.actions[-1].actions, np.ones((2000, 2)))
    finally:
        gateway.close()
    with pytest.raises(LocalProtocolError):
        connection.send_actions(actions(1))  # the session is over


async def test_gateway_actions_use_the_stream_when_datagrams_are_off(tmp_path: Path) -> None:
    import numpy as np

    from edgeswarm.client.session import GatewayClient
    from edgeswarm.gateway import Gateway, GatewayConfig
    from edgeswarm.identity import KeyPair
    from edgeswarm.wire import PROTOCOL_VERSION, Actions, Hello, Role

    stack = quic.default_stack()
    if stack == "qh3":
        pytest.skip("qh3 2.1 clients advertise max_datagram_frame_size=65536 even when told None")
    gateway = Gateway(GatewayConfig(port=0, metrics_port=None, data_dir=tmp_path, stack=stack))
    key = KeyPair.generate()
    gateway.peers.add_peer(key.public_key, "edge-a", Role.EDGE)
    await gateway.start()
    assert gateway.ca_file is not None
    hello = Hello(
        version=PROTOCOL_VERSION, role=Role.EDGE, peer_id="edge-a", public_key=key.public_key
    )
    client = GatewayClient(hello, key)
    off = quic.TransportSettings(max_datagram_frame_size=None)  # the edge refuses datagrams
    try:
        async with quic.connect(
            "127.0.0.1",
            gateway.port,
            ca_file=gateway.ca_file,
            handler=client,
            stack=stack,
            settings=off,
        ):
            await client.wait_welcomed()
            async with asyncio.timeout(5):
                while not any(c.peer_id == "edge-a" for c in gateway.connections):
                    await asyncio.sleep(0.01)
            [connection] = [c for c in gateway.connections if c.peer_id == "edge-a"]
            small = Actions(
                tick=1,
                agent_ids=np.arange(3, dtype=np.uint32),
                actions=np.zeros((3, 1), dtype=np.float32),
            )
            assert connection.send_actions(small) is False
            async with asyncio.timeout(5):
                while not client.actions:
                    await asyncio.sleep(0.01)
            assert client.counters.datagram_actions == 0
    finally:
        gateway.close()


class CallCounter(Recorder):
    """Counts ``data_received`` calls (one per wakeup, not one per packet)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        self.calls += 1
        super().data_received(data, end_stream=end_stream)


@STACKS
async def test_stream_data_of_one_wakeup_reaches_the_handler_in_one_call(
    certs: CertificatePaths, stack: str
) -> None:
    counters: list[CallCounter] = []

    def factory() -> CallCounter:
        counters.append(CallCounter())
        return counters[-1]

    listener = await quic.serve(
        "127.0.0.1", 0, cert=certs.cert, key=certs.key, handler_factory=factory, stack=stack
    )
    payload = bytes(range(256)) * 4000  # 1 MB: ~780 packets of 1350 bytes
    try:
        async with quic.connect(
            "127.0.0.1", listener.port, ca_file=certs.ca, handler=Recorder(), stack=stack
        ) as link:
            link.send(payload)
            await asyncio.sleep(0)
            server = counters[0]
            await server.wait(lambda: len(server.data) >= len(payload), timeout=10)
            assert bytes(server.data) == payload
            packets = len(payload) // 1350
            # up to recv_batch datagrams per wakeup, one call each: never one call per packet
            assert server.calls <= packets // 4, (server.calls, packets)
    finally:
        listener.close()


def _short_header_packets(cids: list[bytes], size: int = 100) -> bytes:
    return b"".join(bytes([0x40]) + cid + bytes(size - 1 - len(cid)) for cid in cids)


@pytest.mark.parametrize(
    ("first", "cids", "same"),
    [
        (0x40, [b"A" * 8] * 4, True),
        (0x40, [b"A" * 8, b"A" * 8, b"B" * 8], False),
        (0xC0, [b"A" * 8] * 2, False),  # a long header (handshake) packet
    ],
)
async def test_gro_buffer_goes_whole_only_for_one_connections_short_packets(
    first: int, cids: list[bytes], same: bool
) -> None:
    from edgeswarm.transport.server_endpoint import ServerEndpoint
    from edgeswarm.transport.stacks import load_stack
    from edgeswarm.transport.tickets import ServerTicketStore

    stack = load_stack("qh3")
    configuration = stack.configuration_class(is_client=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    endpoint = ServerEndpoint(
        sock,
        quic.TransportSettings(),
        stack=stack,
        configuration=configuration,
        handler_factory=Recorder,
        tickets=ServerTicketStore(),
        admission=quic.AdmissionLimits(),
    )
    try:
        buffer = bytearray(_short_header_packets(cids))
        buffer[0] = first
        assert endpoint.same_connection(bytes(buffer), 100) is same
    finally:
        endpoint.close()


class CoarseClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock ticks in whole milliseconds, as uvloop's does."""

    def time(self) -> float:
        return int(super().time() * 1000) / 1000


async def test_quic_runs_on_the_monotonic_clock_whatever_the_loops_resolution(
    certs: CertificatePaths, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgeswarm.transport import endpoint, link
    from edgeswarm.transport.stacks import load_stack

    issued: set[float] = set()  # every value quic_clock returned
    clock = link.quic_clock

    def recording_clock() -> float:
        issued.add(now := clock())
        return now

    monkeypatch.setattr(link, "quic_clock", recording_clock)
    monkeypatch.setattr(endpoint, "quic_clock", recording_clock)
    monkeypatch.setattr(quic, "quic_clock", recording_clock)
    given: list[float] = []  # every `now` the library was handed
    connection_class = load_stack("qh3").connection_class
    for name in ("connect", "receive_datagram", "receive_many_datagrams", "receive_gro_buffer",
                 "datagrams_to_send", "handle_timer"):  # fmt: skip
        method = getattr(connection_class, name)

        def spy(self: object, *args: object, _method: object = method, **kwargs: object) -> object:
            given.append(float(kwargs["now"] if "now" in kwargs else args[-1]))  # type: ignore[arg-type]
            return _method(self, *args, **kwargs)  # type: ignore[operator]

        monkeypatch.setattr(connection_class, name, spy)

    async def round_trip() -> bytes:
        served: list[Recorder] = []
        listener = await _serve(certs, "qh3", served)
        client = Recorder()
        try:
            async with quic.connect(
                "127.0.0.1", listener.port, ca_file=certs.ca, handler=client, stack="qh3"
            ) as link:
                link.send(b"ping" * 1000)
                await client.wait(lambda: len(client.data) >= 4000)
                return bytes(client.data)
        finally:
            listener.close()

    loop = CoarseClockLoop()
    try:
        echoed = await asyncio.get_running_loop().run_in_executor(
            None, loop.run_until_complete, round_trip()
        )
    finally:
        loop.close()
    assert echoed == b"ping" * 1000
    assert len(given) > 10
    # handle_timer may get the deadline itself (a coarse timer fires early): one the library set
    assert sum(now in issued for now in given) >= len(given) * 0.9, "a loop.time() reached QUIC"


class _BlockingReplier:
    """Answers the first data with ``pong`` and then blocks its event loop
    until ``released`` is set (or ``hold_s`` passed): a loop busy elsewhere."""

    def __init__(self, *, now: bool, released: threading.Event, hold_s: float) -> None:
        self.now = now
        self.released = released
        self.hold_s = hold_s
        self.link: quic.SessionLink | None = None
        self.released_in_time: bool | None = None

    def connection_made(self, link: quic.SessionLink) -> None:
        self.link = link

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        if not data or self.released_in_time is not None:
            return
        assert self.link is not None
        asyncio.get_running_loop().call_soon(self._reply)  # outside the read wakeup

    def _reply(self) -> None:
        assert self.link is not None
        self.link.send(b"pong")
        if self.now:
            self.link.transmit_now()
        self.released_in_time = self.released.wait(self.hold_s)

    def connection_lost(self, reason: str) -> None:
        pass


def _ping_from_thread(port: int, ca: Path, stack: str, got_pong: threading.Event) -> None:
    """A client on its own thread and loop: sends ``ping``, sets ``got_pong`` on the answer."""

    async def run() -> None:
        client = Recorder()
        async with quic.connect("127.0.0.1", port, ca_file=ca, handler=client, stack=stack) as link:
            link.send(b"ping")
            await client.wait(lambda: b"pong" in client.data, timeout=10)
            got_pong.set()

    asyncio.run(run())


@STACKS
@pytest.mark.parametrize("now", [True, False])
async def test_transmit_now_sends_before_the_loop_turn_ends(
    certs: CertificatePaths, stack: str, now: bool
) -> None:
    got_pong = threading.Event()
    handlers: list[_BlockingReplier] = []

    def factory() -> _BlockingReplier:
        handlers.append(_BlockingReplier(now=now, released=got_pong, hold_s=5.0 if now else 0.5))
        return handlers[-1]

    listener = await quic.serve(
        "127.0.0.1", 0, cert=certs.cert, key=certs.key, handler_factory=factory, stack=stack
    )
    try:
        client = threading.Thread(
            target=_ping_from_thread, args=(listener.port, certs.ca, stack, got_pong)
        )
        client.start()
        async with asyncio.timeout(15):
            while client.is_alive():
                await asyncio.sleep(0.01)
        client.join()
        assert got_pong.is_set()
        # transmit_now: the pong left while the server's loop was still blocked;
        # plain send: it waited for the end of the loop turn.
        assert handlers[0].released_in_time is now
    finally:
        listener.close()


def test_admission_refuses_retries_and_accepts_within_its_budget() -> None:
    """The pre-auth budget, sans-I/O: caps per address and in all, Retry above a count,
    and handshake rates whose spent budget retries the unvalidated and drops the
    validated; forged attempts never spend the budget of proven addresses."""
    from edgeswarm.transport.admission import Admission, Verdict

    limits = quic.AdmissionLimits(
        max_unauthenticated=4,
        max_unauthenticated_per_address=2,
        retry_above=3,
        new_per_s=10,
        new_burst=3,
    )
    admission = Admission(limits, now=0.0)
    for address in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        assert admission.decide(address, validated=False, now=0.0) is Verdict.ACCEPT
        admission.opened(address)
    assert admission.decide("10.0.0.1", validated=True, now=0.0) is Verdict.REFUSE  # per address
    # 3 unauthenticated: new attempts must prove their address first
    assert admission.decide("10.0.0.3", validated=False, now=0.0) is Verdict.RETRY
    # the unvalidated budget is spent, the validated one is whole
    assert admission.decide("10.0.0.3", validated=True, now=0.0) is Verdict.ACCEPT
    admission.opened("10.0.0.3")
    assert admission.decide("10.0.0.4", validated=True, now=5.0) is Verdict.REFUSE  # 4 in all
    admission.left("10.0.0.1")  # authenticated
    assert admission.unauthenticated == 3
    assert admission.decide("10.0.0.4", validated=True, now=5.0) is Verdict.ACCEPT
    stats = admission.stats
    assert (stats.accepted, stats.refused, stats.retries) == (4, 2, 1)

    rates = Admission(quic.AdmissionLimits(new_per_s=10, new_burst=3), now=0.0)
    verdicts = [rates.decide("10.0.0.9", validated=True, now=0.0) for _ in range(4)]
    assert verdicts == [Verdict.ACCEPT] * 3 + [Verdict.REFUSE]  # dropped: it retransmits
    assert rates.decide("10.0.0.9", validated=True, now=0.1) is Verdict.ACCEPT  # refilled
    verdicts = [rates.decide("10.0.0.8", validated=False, now=0.1) for _ in range(4)]
    assert verdicts == [Verdict.ACCEPT] * 3 + [Verdict.RETRY]
