"""Server half of suite "transport", run as its own process.

``python -m edgeswarm.bench.transport_server KIND STACK SETTINGS_JSON PEERS_JSON``
(PEERS_JSON: ``{peer_id: public key hex}`` the gateway enrolls as edges) starts
one server on 127.0.0.1 port 0, prints ``{"port": ..., "ca": ...}`` on one
line, and serves until stdin closes. Kinds:

- ``gateway``: the real :class:`~edgeswarm.gateway.Gateway` on STACK
- ``raw``: the QUIC adapter with a handler that counts length-prefixed
  frames and acks each with its number (12 bytes); no decoding
- ``native``: the same counting server on the library's own asyncio
  ``QuicServer``/``QuicConnectionProtocol`` (one transmit per datagram), to
  measure what the adapter's I/O discipline is worth
- ``grpc``: a grpcio unary method that answers every call
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

from edgeswarm.transport import quic
from edgeswarm.transport.tls import ensure_certificates
from edgeswarm.wire import ALPN

ACK = struct.Struct(">IQ")
"""Raw ack: length prefix (8) and the number of the frame acknowledged."""
PREFIX = struct.Struct(">I")
GRPC_METHOD = "/edgeswarm.Bench/Observe"


class FrameCounter:
    """Counts length-prefixed frames and acks each one (a ``StreamHandler``)."""

    def __init__(self) -> None:
        self.link: quic.SessionLink | None = None
        self.frames = 0
        self._buffer = bytearray()

    def connection_made(self, link: quic.SessionLink) -> None:
        self.link = link
        link.mark_authenticated()  # the raw baseline has no handshake: out of the pre-auth budget

    def data_received(self, data: bytes, *, end_stream: bool) -> None:
        out = self.feed(data)
        if out and self.link is not None:
            self.link.send(out)

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer
        buffer += data
        offset = 0
        acks: list[bytes] = []
        while len(buffer) - offset >= 4:
            (length,) = PREFIX.unpack_from(buffer, offset)
            if len(buffer) - offset - 4 < length:
                break
            offset += 4 + length
            self.frames += 1
            acks.append(ACK.pack(8, self.frames))
        del buffer[:offset]
        return b"".join(acks)

    def connection_lost(self, reason: str) -> None:
        pass


async def _serve_native(stack: str, settings: quic.TransportSettings, tmp: Path) -> int:
    paths = ensure_certificates(tmp)
    configuration = importlib.import_module(f"{stack}.quic.configuration").QuicConfiguration(
        alpn_protocols=[ALPN],
        is_client=False,
        max_data=settings.flow_control_window,
        max_stream_data=settings.flow_control_window,
        max_datagram_size=settings.max_datagram_size,
    )
    configuration.load_cert_chain(str(paths.cert), str(paths.key))
    protocol_module = importlib.import_module(f"{stack}.asyncio.protocol")
    events = importlib.import_module(f"{stack}.quic.events")
    server_module = importlib.import_module(f"{stack}.asyncio.server")

    class NativeCounter(protocol_module.QuicConnectionProtocol):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.counter = FrameCounter()

        def quic_event_received(self, event: Any) -> None:
            if isinstance(event, events.StreamDataReceived):
                out = self.counter.feed(event.data)
                if out:
                    self._quic.send_stream_data(event.stream_id, out)
                    self.transmit()

    server = await server_module.serve(
        "127.0.0.1", 0, configuration=configuration, create_protocol=NativeCounter
    )
    return int(server._transport.get_extra_info("sockname")[1])


async def _serve_grpc() -> tuple[int, Any]:
    import grpc  # type: ignore[import-untyped]

    async def observe(request: bytes, context: Any) -> bytes:
        return b"ok"

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "edgeswarm.Bench", {"Observe": grpc.unary_unary_rpc_method_handler(observe)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return port, server


async def _wait_stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main(
    kind: str, stack: str, settings: quic.TransportSettings, peers: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory(prefix="edgeswarm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        keep: Any = None
        if kind == "gateway":
            from edgeswarm.gateway import Gateway, GatewayConfig
            from edgeswarm.wire import Role

            gateway = Gateway(
                GatewayConfig(
                    port=0, metrics_port=None, data_dir=tmp, stack=stack, transport=settings
                )
            )
            for peer_id, public_key in peers.items():
                gateway.peers.add_peer(bytes.fromhex(public_key), peer_id, Role.EDGE)
            await gateway.start()
            port, ca, keep = gateway.port, tmp / "ca.crt", gateway
        elif kind == "raw":
            paths = ensure_certificates(tmp)
            keep = await quic.serve(
                "127.0.0.1",
                0,
                cert=paths.cert,
                key=paths.key,
                handler_factory=FrameCounter,
                stack=stack,
                settings=settings,
            )
            port, ca = keep.port, paths.ca
        elif kind == "native":
            port, ca = await _serve_native(stack, settings, tmp), tmp / "ca.crt"
        elif kind == "grpc":
            port, keep = await _serve_grpc()
            ca = tmp
        else:
            raise SystemExit(f"unknown server kind {kind!r}")
        print(json.dumps({"port": port, "ca": str(ca)}), flush=True)
        await _wait_stdin_closed()
        del keep


if __name__ == "__main__":
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    kind_arg, stack_arg, settings_json, peers_json = sys.argv[1:5]
    settings_arg = quic.TransportSettings(**json.loads(settings_json))
    asyncio.run(main(kind_arg, stack_arg, settings_arg, json.loads(peers_json)))
