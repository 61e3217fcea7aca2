"""What STATUS says of an edge: its address, when it was last seen, and every batch the
log committed, also those committed after the session ended (BYE with batches in
flight). A raw protocol peer against a real gateway process on loopback."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.wire import FEATURE_ACK_THROUGH, Bye, ErrorCode, Welcome, encode_frame

from .conftest import RunningGateway
from .raw_peer import RawPeer
from .test_untrusted_peers import batch_frame, wait_until

pytestmark = pytest.mark.integration

BATCHES = 40


async def send_and_leave(gateway: RunningGateway, key: KeyPair) -> None:
    """BATCHES batches and a BYE in one write: the BYE ends the session before the log
    commits them."""
    peer = RawPeer()
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        await peer.handshake(key, "edge-late", features=(FEATURE_ACK_THROUGH,))
        await peer.wait_for(Welcome)
        frames = b"".join(batch_frame(seq) for seq in range(1, BATCHES + 1))
        peer.send(frames + encode_frame(Bye(code=ErrorCode.NO_ERROR, reason="done")))
        await wait_until(peer, lambda: peer.lost is not None or any(
            isinstance(frame, Bye) for frame in peer.frames))  # fmt: skip


def test_status_counts_batches_committed_after_bye_and_shows_address_and_last_seen(
    gateway: RunningGateway,
) -> None:
    key = KeyPair.generate()
    gateway.enroll(key, "edge-late")
    before = time.time()
    asyncio.run(send_and_leave(gateway, key))

    async def edge_record() -> dict[str, object]:
        async with asyncio.timeout(30):
            while True:
                status = await gateway.status()
                [edge] = [e for e in status["edges"] if e["peer_id"] == "edge-late"]
                if not edge["connected"] and edge["batches"] == BATCHES:
                    return edge  # type: ignore[no-any-return]
                await asyncio.sleep(0.1)

    edge = asyncio.run(edge_record())
    assert edge["observations"] == BATCHES * 10
    assert edge["last_seq"] == BATCHES
    assert str(edge["address"]).startswith("127.0.0.1:")
    assert before - 1 <= float(edge["last_seen"]) <= time.time() + 1  # type: ignore[arg-type]
