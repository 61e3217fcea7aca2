"""Two peered gateways cut apart, then healed: the CRDT swarm state converges.

Gateway ``gw-b`` replicates with ``gw-a`` through a UDP relay (``--peer`` names the
relay), so the partition cuts only the peer link: each gateway keeps serving its own
edge. A state writer on each side adds to a counter of its own while the link is cut: the
two gateways' states must drift apart (each lacks the other's write), and after the heal
become equal with both writes. An edge on each gateway (``anomaly`` policy, counting into
the shared ``anomalies`` counter) streams throughout; its observations are delivered to
its gateway as always.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from edgeswarm.chaos.processes import (
    ADMIN_ID,
    GatewayProcess,
    ProgressLines,
    start_edge,
    start_gateway,
    stop,
)
from edgeswarm.chaos.relay import UdpRelay
from edgeswarm.chaos.verdict import delivery, finish
from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import fetch_state
from edgeswarm.client.session import GatewayClient
from edgeswarm.edge.state_link import StateLink
from edgeswarm.gateway.peers import PeerRegistry
from edgeswarm.identity import KeyPair
from edgeswarm.models import write_anomaly_model
from edgeswarm.transport import quic
from edgeswarm.transport.quic import default_stack
from edgeswarm.wire import FEATURE_STATE, PROTOCOL_VERSION, Hello, Role

PARTITION_S = 4.0
CONVERGE_TIMEOUT_S = 30.0


@asynccontextmanager
async def _writer(
    gateway: GatewayProcess, writer_id: str, directory: Path
) -> AsyncIterator[StateLink]:
    """A state writer on ``gateway``: an edge session with a live StateLink, no agents."""
    key = KeyPair.generate()
    with PeerRegistry(gateway.data_dir / "peers.db") as registry:
        registry.add_peer(key.public_key, writer_id, Role.EDGE, replace=True)
    with StateLink(directory, writer_id=writer_id, interval_s=0.02) as link:
        hello = Hello(version=PROTOCOL_VERSION, role=Role.EDGE, peer_id=writer_id,
                      public_key=key.public_key, features=(FEATURE_STATE,),
                      state_incarnation=link.document.incarnation)  # fmt: skip
        client = GatewayClient(hello, key)
        link.attach(client)
        async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=client,
                                stack=default_stack()):  # fmt: skip
            await client.wait_welcomed()
            task = asyncio.create_task(link.run())
            try:
                yield link
                await link.flush()
            finally:
                task.cancel()
                client.close("done")


async def _state(gateway: GatewayProcess) -> dict[str, Any]:
    address = GatewayAddress(port=gateway.port, ca_file=gateway.ca, stack=default_stack())
    _, snapshot = await fetch_state(address, key=gateway.admin_key, admin_id=ADMIN_ID)
    return dict(snapshot)


async def _until(check: Callable[[], Any], timeout: float) -> float | None:
    """Seconds until the awaitable ``check()`` is true, polled every 0.1 s; None if never."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if await check():
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    return None


async def _partitioned_writes(
    first: GatewayProcess, second: GatewayProcess, relay: UdpRelay, work: Path
) -> dict[str, Any]:
    """Cut the peer link, write on both sides, check they drift apart, heal, and time
    how long until both gateways hold the same state with both writes."""
    async with (
        _writer(first, "writer-a", work / "writer-a") as a,
        _writer(second, "writer-b", work / "writer-b") as b,
    ):
        relay.dropping = True
        cut_at = time.monotonic()
        a.swarm.counter_add("g/a", 3)
        b.swarm.counter_add("g/b", 4)

        async def each_has_its_own() -> bool:
            sa, sb = await _state(first), await _state(second)
            return bool(sa["counters"].get("g/a") == 3 and sb["counters"].get("g/b") == 4)

        await _until(each_has_its_own, 10.0)
        await asyncio.sleep(max(0.0, PARTITION_S - (time.monotonic() - cut_at)))  # the cut lasts
        sa, sb = await _state(first), await _state(second)
        apart = "g/b" not in sa["counters"] and "g/a" not in sb["counters"]
        relay.dropping = False

        async def converged() -> bool:
            sa, sb = await _state(first), await _state(second)
            both = sa["counters"].get("g/a") == 3 and sa["counters"].get("g/b") == 4
            return bool(both and sa == sb)

        converge_s = await _until(converged, CONVERGE_TIMEOUT_S)
    return {"apart": apart, "converge_s": None if converge_s is None else round(converge_s, 2)}


def partition_gateways(work: Path) -> dict[str, Any]:
    model = work / "anomaly.tflite"
    write_anomaly_model(model)
    first = start_gateway(work / "gw-a", "--gateway-id", "gw-a")
    identity = KeyPair.generate()
    (work / "gw-b").mkdir()
    identity.save(work / "gw-b" / "identity.key")
    with PeerRegistry(first.data_dir / "peers.db") as registry:
        registry.add_peer(identity.public_key, "gw-b", Role.GATEWAY, replace=True)
    relay = UdpRelay(("127.0.0.1", first.port), delay_s=0.0, jitter_s=0.0)
    second: GatewayProcess | None = None
    edges = []
    try:
        second = start_gateway(
            work / "gw-b", "--gateway-id", "gw-b", "--peer", f"127.0.0.1:{relay.address[1]}",
            "--peer-ca", str(first.ca),
        )  # fmt: skip
        for name, gateway in (("edge-a", first), ("edge-b", second)):
            process = start_edge(f"127.0.0.1:{gateway.port}", gateway.ca, gateway.edge_token(),
                                 work / name, "--agents", "1000", "--tick-hz", "20",
                                 "--ticks", "240", "--policy", "boids", "--policy", "anomaly",
                                 "--model", str(model), "--drain-timeout", "60",
                                 edge_id=name)  # fmt: skip
            edges.append((name, gateway, process, ProgressLines(process)))
        for _, _, _, lines in edges:
            lines.steady()
        written = asyncio.run(_partitioned_writes(first, second, relay, work))
        figures: dict[str, Any] = {"acked_lost": 0, "duplicates_applied": 0, "failed_checks": []}
        for name, gateway, process, lines in edges:
            rest = lines.rest()
            verdict = delivery(gateway, rest[-1], returncode=process.wait(30),
                               sent_batches=rest[-1]["batches_sent"], edge_id=name)  # fmt: skip
            figures["acked_lost"] += verdict["acked_lost"]
            figures["duplicates_applied"] += verdict["duplicates_applied"]
            figures["failed_checks"] += [f"{name}:{check}" for check in verdict["failed_checks"]]
        figures.update(
            partition_s=PARTITION_S,
            states_apart_during_partition=written["apart"],
            converged_s_after_heal=written["converge_s"],
            datagrams_dropped=relay.dropped,
            counters=first.state().get("counters", {}),
        )
        return finish(
            "partition_gateways", figures,
            apart_while_cut=written["apart"],
            converged=written["converge_s"] is not None,
        )  # fmt: skip
    finally:
        for _, _, process, _ in edges:
            stop(process)
        if second is not None:
            stop(second.process)
        stop(first.process)
        relay.close()
