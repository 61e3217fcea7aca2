"""Admin client: the operations the ``edgeswarm`` CLI performs on a gateway."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path
from typing import Any

from edgeswarm.edge.client import GatewayClient
from edgeswarm.transport import quic
from edgeswarm.wire import PROTOCOL_VERSION, Hello, Role


async def fetch_status(
    host: str,
    port: int,
    *,
    ca_file: Path,
    server_name: str | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    """Connect as an admin, ask for STATUS, return it as a JSON-ready dict."""
    client = GatewayClient(
        Hello(version=PROTOCOL_VERSION, role=Role.ADMIN, peer_id=f"admin@{socket.gethostname()}")
    )
    async with (
        asyncio.timeout(timeout),
        quic.connect(host, port, ca_file=ca_file, handler=client, server_name=server_name),
    ):
        await client.wait_welcomed(timeout)
        status = await client.request_status(timeout)
        client.close("done")
    return dataclasses.asdict(status)
