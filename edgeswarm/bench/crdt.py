"""Suite "crdt": shared swarm state (pycrdt) merged at a gateway.

Cases:

- ``batched``: 100 edge documents each write counters, set members and flags;
  every edge hands out ONE update per 64 ops (:class:`UpdateBatcher`). Metric
  ``ops_per_s``: ops merged per second by the gateway document applying all
  those updates through its per-edge :class:`StateSync`.
- ``per_op``: the same ops, one update per op.
- ``partition``: two real gateways (``Gateway`` objects serving QUIC on
  127.0.0.1), each with 10 edges connected over QUIC (``StateLink``), are
  split; both sides write; then gateway-b connects to gateway-a
  (``add_peer_gateway``). Metric ``converge_s``: time from the heal until
  every document (2 gateways, 20 edges) is equal, QUIC and TLS handshake,
  authentication, state-vector sync and rebroadcast included.
  :func:`converge_after_partition` is the same scenario in process, without
  sockets (used by the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from edgeswarm.bench import BenchResult
from edgeswarm.state import StateSync, SwarmDocument, UpdateBatcher

EDGES = 100
OPS_PER_UPDATE = 64
ROUNDS = 8
REPEATS = 3


def _edit(document: SwarmDocument, edge: int, op: int) -> None:
    """One op of an edge's mix: mostly counter adds, some set adds, a few flags."""
    kind = op % 8
    if kind == 7:
        document.flag_set(f"g{edge % 4}/flag{op % 5}", op % 2 == 0)
    elif kind == 6:
        document.set_add(f"g{edge % 4}/seen", f"res-{edge}-{op}")
    else:
        document.counter_add(f"g{edge % 4}/c{op % 16}", 1 + op % 3)


def _edge_updates(ops_per_update: int, rounds: int) -> tuple[list[list[bytes]], int]:
    """Updates of each edge, in order, and the total number of ops in them."""
    per_edge: list[list[bytes]] = []
    ops = 0
    for edge in range(EDGES):
        document = SwarmDocument(f"edge-{edge}")
        batcher = UpdateBatcher(document)
        updates: list[bytes] = []
        for op in range(rounds * OPS_PER_UPDATE):
            _edit(document, edge, op)
            ops += 1
            if (op + 1) % ops_per_update == 0:
                update = batcher.flush()
                if update is not None:
                    updates.append(update)
        per_edge.append(updates)
    return per_edge, ops


def _merge_rate(ops_per_update: int) -> float:
    per_edge, ops = _edge_updates(ops_per_update, ROUNDS)
    interleaved = [
        (edge, updates[i])
        for i in range(max(len(u) for u in per_edge))
        for edge, updates in enumerate(per_edge)
        if i < len(updates)
    ]
    best = float("inf")
    for _ in range(REPEATS):
        gateway = SwarmDocument("gateway-0")
        links = [StateSync(gateway) for _ in range(EDGES)]
        for link in links:
            link.handle_sync_request(b"\x00")  # synced, as on a live connection
        start = time.perf_counter()
        for edge, update in interleaved:
            links[edge].apply_update(update)
        best = min(best, time.perf_counter() - start)
    return ops / best


def _pair(a: StateSync, b: StateSync) -> None:
    """The handshake both ways between two links of one connection."""
    a_request, b_request = a.sync_request(), b.sync_request()
    a.apply_update(b.handle_sync_request(a_request))
    b.apply_update(a.handle_sync_request(b_request))


def _pump(links: list[tuple[StateSync, StateSync]]) -> int:
    """Deliver every pending update over every link once; how many were sent."""
    sent = 0
    for left, right in links:
        for src, dst in ((left, right), (right, left)):
            update = src.data_to_send()
            if update is not None:
                dst.apply_update(update)
                sent += 1
    return sent


def converge_after_partition(edges_per_side: int = 50, ops_per_edge: int = 256) -> float:
    """Seconds from healing a split between two gateways until all documents are equal."""
    gateways = [SwarmDocument("gateway-a"), SwarmDocument("gateway-b")]
    sides: list[list[SwarmDocument]] = [
        [SwarmDocument(f"edge-{side}-{i}") for i in range(edges_per_side)] for side in range(2)
    ]
    links: list[tuple[StateSync, StateSync]] = []
    for side, gateway in enumerate(gateways):
        for edge in sides[side]:
            link = (StateSync(edge), StateSync(gateway))
            _pair(*link)
            links.append(link)
    # Split: each side writes and syncs within itself only.
    for side in range(2):
        for index, edge in enumerate(sides[side]):
            with edge.batch():
                for op in range(ops_per_edge):
                    _edit(edge, index + side * edges_per_side, op)
        with gateways[side].batch():
            gateways[side].flag_set("ops/maintenance", side == 0)
            gateways[side].counter_add("ops/partitions", 1)
    while _pump(links):
        pass
    # Heal: a new gateway-to-gateway connection, handshake, then relay until quiet.
    start = time.perf_counter()
    bridge = (StateSync(gateways[0]), StateSync(gateways[1]))
    _pair(*bridge)
    links.append(bridge)
    while _pump(links):
        pass
    elapsed = time.perf_counter() - start
    everyone = [*gateways, *sides[0], *sides[1]]
    reference = gateways[0].snapshot()
    if any(document.snapshot() != reference for document in everyone):
        raise AssertionError("documents did not converge after the partition healed")
    return elapsed


def run() -> list[BenchResult]:
    batched = _merge_rate(OPS_PER_UPDATE)
    per_op = _merge_rate(1)
    return [
        BenchResult("crdt", "batched", "ops_per_s", batched, "ops/s"),
        BenchResult("crdt", "per_op", "ops_per_s", per_op, "ops/s"),
        BenchResult("crdt", "partition", "converge_s", converge_over_quic(), "s"),
    ]


async def _converge_over_quic(edges_per_side: int, ops_per_edge: int, work: Path) -> float:
    """Two real gateways (QUIC on loopback), each with edges; split, write, heal, time."""
    from edgeswarm.client.session import GatewayClient
    from edgeswarm.edge.state_link import StateLink
    from edgeswarm.gateway import Gateway, GatewayConfig
    from edgeswarm.identity import KeyPair
    from edgeswarm.transport import quic
    from edgeswarm.wire import FEATURE_STATE, PROTOCOL_VERSION, Hello, Role

    def config(name: str, peer_ca: Path | None = None) -> GatewayConfig:
        return GatewayConfig(
            port=0,
            data_dir=work / name,
            gateway_id=name,
            fsync="off",
            metrics_port=None,
            peer_ca=peer_ca,
            stack=quic.default_stack(),
        )

    first = Gateway(config("gateway-a"))
    await first.start()
    assert first.ca_file is not None
    second = Gateway(config("gateway-b", peer_ca=first.ca_file))
    await second.start()
    gateways = [first, second]
    first.peers.add_peer(second.identity.public_key, "gateway-b", Role.GATEWAY)
    links: list[StateLink] = []
    closed = False

    def close_gateways() -> None:
        nonlocal closed
        if not closed:
            closed = True
            for gateway in gateways:
                gateway.close()

    try:
        async with contextlib.AsyncExitStack() as stack:
            for side, gateway in enumerate(gateways):
                for index in range(edges_per_side):
                    edge_id = f"edge-{side}-{index}"
                    key = KeyPair.generate()
                    gateway.peers.add_peer(key.public_key, edge_id, Role.EDGE)
                    link = stack.enter_context(
                        StateLink(work / edge_id, writer_id=edge_id, interval_s=0.02, fsync="never")
                    )
                    hello = Hello(
                        version=PROTOCOL_VERSION,
                        role=Role.EDGE,
                        peer_id=edge_id,
                        public_key=key.public_key,
                        features=(FEATURE_STATE,),
                        state_incarnation=link.document.incarnation,  # its writer id, bound
                    )
                    client = GatewayClient(hello, key)
                    link.attach(client)
                    ca_file = gateway.ca_file
                    assert ca_file is not None
                    await stack.enter_async_context(
                        quic.connect(
                            "127.0.0.1",
                            gateway.port,
                            ca_file=ca_file,
                            handler=client,
                            stack=quic.default_stack(),
                        )
                    )
                    await client.wait_welcomed()
                    links.append(link)
                    stack.enter_context(_cancelling(asyncio.create_task(link.run())))
            # Split: both sides write; each side syncs within itself only.
            for number, link in enumerate(links):
                with link.document.batch():
                    for op in range(ops_per_edge):
                        _edit(link.document, number, op)
            sides = [links[:edges_per_side], links[edges_per_side:]]
            for gateway, side_links in zip(gateways, sides, strict=True):
                await _until_equal(
                    [gateway.state.document, *(link.document for link in side_links)]
                )
            if first.state.document.snapshot() == second.state.document.snapshot():
                raise AssertionError("the two sides did not diverge during the partition")
            # Heal: gateway-b connects to gateway-a; time until every document is equal.
            start = time.perf_counter()
            second.add_peer_gateway("127.0.0.1", first.port)
            await _until_equal(
                [g.state.document for g in gateways] + [link.document for link in links]
            )
            elapsed = time.perf_counter() - start
            close_gateways()  # BYE to every edge while their connections are still up
            await asyncio.sleep(0.05)
            return elapsed
    finally:
        close_gateways()
        await asyncio.sleep(0.05)


@contextlib.contextmanager
def _cancelling(task: asyncio.Task[None]) -> Iterator[asyncio.Task[None]]:
    try:
        yield task
    finally:
        task.cancel()


async def _until_equal(documents: list[SwarmDocument], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        reference = documents[0].snapshot()
        if all(document.snapshot() == reference for document in documents[1:]):
            return
        if loop.time() > deadline:
            raise AssertionError("documents did not converge")
        await asyncio.sleep(0.002)


def converge_over_quic(edges_per_side: int = 10, ops_per_edge: int = 256) -> float:
    """Seconds from healing a split between two real gateways until all documents are equal."""
    with tempfile.TemporaryDirectory(prefix="edgeswarm-crdt-") as work:
        return asyncio.run(_converge_over_quic(edges_per_side, ops_per_edge, Path(work)))
