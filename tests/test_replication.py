"""Gateway-to-gateway replication: a peer link reconnects after its peer goes away and
the peer catches up on what changed meanwhile (in-process gateways, real QUIC)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeswarm.gateway import Gateway, GatewayConfig
from edgeswarm.transport import quic
from edgeswarm.wire import Role

from .gateway_harness import serving, wait_until

pytestmark = pytest.mark.integration


async def test_a_peer_link_reconnects_after_the_peer_restarts_and_catches_it_up(
    tmp_path: Path,
) -> None:
    config_b = GatewayConfig(
        port=0, metrics_port=None, data_dir=tmp_path / "b", gateway_id="gw-b",
        stack=quic.default_stack(),
    )  # fmt: skip
    first_b = Gateway(config_b)
    await first_b.start()
    port, ca = first_b.port, first_b.ca_file
    b_closed = False
    try:
        async with serving(
            tmp_path / "a", gateway_id="gw-a", peers=(("127.0.0.1", port),), peer_ca=ca
        ) as a:
            first_b.peers.add_peer(a.identity.public_key, "gw-a", Role.GATEWAY)
            [link] = a.peer_links
            await wait_until(lambda: link.connected and first_b.state.peers == 1)
            assert (link.connects, link.remote_id) == (1, "gw-b")
            first_b.close()  # the peer goes away (BYE), then its port is dead
            await first_b.wait_closed()
            b_closed = True
            await wait_until(lambda: not link.connected)
            a.state.document.counter_add("g/while-away", 3)  # written while b is gone
            # same data dir: same CA, same peers.db (gw-a still enrolled), same state
            async with serving(tmp_path / "b", gateway_id="gw-b", port=port) as second_b:
                await wait_until(lambda: link.connects == 2 and link.connected)
                await wait_until(lambda: second_b.state.document.counter_value("g/while-away") == 3)
                assert second_b.state.peers == 1
    finally:
        if not b_closed:
            first_b.close()
