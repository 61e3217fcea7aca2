"""Real inference node processes and an in-process edge client of the heavy lane, for tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.reconnect import open_session
from edgeswarm.client.session import GatewayClient
from edgeswarm.identity import KeyPair
from edgeswarm.transport.quic import default_stack
from edgeswarm.wire import (
    FEATURE_HEAVY,
    PROTOCOL_VERSION,
    Actions,
    Hello,
    InferRequest,
    Role,
)

from .conftest import STARTUP_TIMEOUT_S, RunningGateway, edgeswarm_command


@dataclass
class RunningNode:
    """An ``edgeswarm infer`` process."""

    process: subprocess.Popen[str]
    http_port: int | None
    info: dict[str, Any]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def start_node(
    tmp: Path,
    models: list[Path],
    *,
    node_id: str = "node-0",
    gateway: RunningGateway | None = None,
    extra: tuple[str, ...] = (),
) -> RunningNode:
    args = [*(f"--model={m}" for m in models), "--node-id", node_id, "--metrics-port", "-1"]
    args += ["--http", "127.0.0.1:0", "--data-dir", str(tmp / node_id)]
    if gateway is not None:
        with gateway.registry() as registry:
            token = registry.issue_token(Role.INFERENCE, ttl_s=600)
        args += ["--gateway", f"127.0.0.1:{gateway.port}", "--ca", str(gateway.ca)]
        args += ["--join-token", token]
    log = tmp / f"{node_id}.log"
    with log.open("a") as stderr:
        process = subprocess.Popen(
            edgeswarm_command("infer", *args, *extra),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(STARTUP_TIMEOUT_S)
        raise AssertionError(f"inference node did not start: {log.read_text()[-2000:]}")
    info = json.loads(line)
    return RunningNode(process=process, http_port=info["http_port"], info=info, log=log)


def wait_for_nodes(gateway: RunningGateway, count: int, timeout: float = 20.0) -> None:
    """Until the gateway's metrics count ``count`` nodes joined (its log says so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        joined = gateway.log.read_text().count('"inference node joined"')
        if joined >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} inference nodes never joined: {gateway.log.read_text()[-2000:]}")


class HeavyEdge:
    """An edge's session that asks for heavy inference and collects the answers."""

    def __init__(self, client: GatewayClient) -> None:
        self.client = client
        self.answers: dict[int, list[Actions]] = {}
        self._next_id = 0

    def ask(
        self, inputs: NDArray[np.float32], *, model: str = "triage", deadline_ms: int = 2000
    ) -> int:
        self._next_id += 1
        self.client.send_infer(
            InferRequest(
                request_id=self._next_id,
                model=model,
                deadline_ms=deadline_ms,
                tick=0,
                agent_ids=np.arange(inputs.shape[0], dtype=np.uint32) + 1000 * self._next_id,
                inputs=inputs,
            )
        )
        return self._next_id

    def collect(self) -> None:
        while self.client.results:
            _, result = self.client.results.popleft()
            assert result.request_id is not None
            self.answers.setdefault(result.request_id, []).append(result)

    async def wait_answered(self, request_ids: set[int], timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while True:
                self.collect()
                if request_ids <= set(self.answers):
                    return
                await self.client.wait_change()


@asynccontextmanager
async def heavy_edge(gateway: RunningGateway, edge_id: str = "asker") -> AsyncIterator[HeavyEdge]:
    key = KeyPair.generate()
    gateway.enroll(key, edge_id)
    hello = Hello(
        version=PROTOCOL_VERSION,
        role=Role.EDGE,
        peer_id=edge_id,
        public_key=key.public_key,
        features=(FEATURE_HEAVY,),
    )
    client = GatewayClient(hello, key)
    address = GatewayAddress(port=gateway.port, ca_file=gateway.ca, stack=default_stack())
    async with open_session(address, client) as (_, welcome):
        assert welcome.infer_window > 0
        yield HeavyEdge(client)
        client.close("done")
