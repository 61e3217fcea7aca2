"""A real gateway refuses a forged swarm-state entry and an admin's write (real QUIC on
loopback; the count is read back with ``edgeswarm state``'s client)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import fetch_state
from edgeswarm.identity import KeyPair
from edgeswarm.state import SwarmDocument, schema
from edgeswarm.transport import quic
from edgeswarm.transport.quic import default_stack
from edgeswarm.wire import FEATURE_STATE, Error, ErrorCode, Role, StateUpdate, Welcome, encode_frame

from .conftest import ADMIN_ID, RunningGateway
from .crafted_updates import COUNTER, entry, forged_update, writer
from .raw_peer import RawPeer

pytestmark = pytest.mark.integration


async def _state_session(
    gateway: RunningGateway, peer_id: str, role: Role, incarnation: int | None
) -> tuple[RawPeer, Any]:
    peer, key = RawPeer(), KeyPair.generate()
    gateway.enroll(key, peer_id, role)
    context = quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer)
    await context.__aenter__()
    await peer.handshake(
        key, peer_id, role=role, features=(FEATURE_STATE,), state_incarnation=incarnation
    )
    await peer.wait_for(Welcome)
    return peer, context


async def _forgeries(gateway: RunningGateway) -> tuple[list[Error], list[Error], int]:
    edge_a = SwarmDocument("edge-a", incarnation=7)
    edge_a.counter_add(COUNTER, 5)
    a, a_ctx = await _state_session(gateway, "edge-a", Role.EDGE, 7)
    b, b_ctx = await _state_session(gateway, "edge-b", Role.EDGE, 9)
    admin, admin_ctx = await _state_session(gateway, "viewer", Role.ADMIN, None)
    try:
        a.send(encode_frame(StateUpdate(update=edge_a.encode_update())))
        address = GatewayAddress(port=gateway.port, ca_file=gateway.ca, stack=default_stack())
        async with asyncio.timeout(10):
            while True:
                _, snapshot = await fetch_state(address, key=gateway.admin_key, admin_id=ADMIN_ID)
                if snapshot["counters"].get(COUNTER) == 5:
                    break
        root, victim = schema.counter_root(COUNTER), entry(writer("edge-a", 7))
        base = edge_a.encode_update()
        for as_client in (writer("edge-b", 9), writer("edge-a", 7)):
            forged = forged_update(base, as_client=as_client, root=root, key=victim, value=10**6)
            b.send(encode_frame(StateUpdate(update=forged)))
        admin_write = forged_update(
            base, as_client=writer("viewer", 1), root=root, key=entry(writer("viewer", 1)), value=1
        )
        admin.send(encode_frame(StateUpdate(update=admin_write)))
        async with asyncio.timeout(10):
            while len([f for f in b.frames if isinstance(f, Error)]) < 2:
                b.changed.clear()
                await b.changed.wait()
        await admin.wait_for(Error)
        _, snapshot = await fetch_state(address, key=gateway.admin_key, admin_id=ADMIN_ID)
        return (
            [f for f in b.frames if isinstance(f, Error)],
            [f for f in admin.frames if isinstance(f, Error)],
            snapshot["counters"][COUNTER],
        )
    finally:
        for context in (a_ctx, b_ctx, admin_ctx):
            await context.__aexit__(None, None, None)


def test_the_gateway_refuses_a_forged_entry_and_an_admins_write(gateway: RunningGateway) -> None:
    edge_errors, admin_errors, count = asyncio.run(_forgeries(gateway))
    assert [e.code for e in edge_errors] == [ErrorCode.FOREIGN_STATE_ENTRY] * 2
    assert [e.code for e in admin_errors] == [ErrorCode.STATE_READ_ONLY]
    assert count == 5
    log = gateway.log.read_text()
    assert "state frame refused" in log
    assert gateway.process.poll() is None
