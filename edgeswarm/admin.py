"""Admin client: the operations the ``edgeswarm`` CLI performs on a gateway."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

from edgeswarm.edge.client import GatewayClient
from edgeswarm.identity import KeyPair
from edgeswarm.transport import quic
from edgeswarm.wire import PROTOCOL_VERSION, Hello, Role


async def fetch_status(
    host: str,
    port: int,
    *,
    ca_file: Path,
    key: KeyPair,
    peer_id: str = "admin",
    server_name: str | None = None,
    timeout: float = 10.0,
    stack: str = quic.DEFAULT_STACK,
) -> dict[str, Any]:
    """Connect as an admin, ask for STATUS, return it as a JSON-ready dict.

    Raises ``SessionEndedError`` with the gateway's reason when it refuses the key.
    """
    hello = Hello(
        version=PROTOCOL_VERSION, role=Role.ADMIN, peer_id=peer_id, public_key=key.public_key
    )
    client = GatewayClient(hello, key)
    async with (
        asyncio.timeout(timeout),
        quic.connect(
            host,
            port,
            ca_file=ca_file,
            handler=client,
            server_name=server_name,
            stack=stack,
            connect_timeout=timeout,
        ),
    ):
        await client.wait_welcomed(timeout)
        status = await client.request_status(timeout)
        client.close("done")
    return dataclasses.asdict(status)
