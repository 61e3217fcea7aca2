"""Suite "crdt": shared swarm state (pycrdt) merged at a gateway.

Cases:

- ``batched``: 100 edge documents each write counters, set members and flags;
  every edge hands out ONE update per 64 ops (:class:`UpdateBatcher`). Metric
  ``ops_per_s``: ops merged per second by the gateway document applying all
  those updates through its per-edge :class:`StateSync`.
- ``per_op``: the same ops, one update per op.
- ``partition``: two gateways, each with edges, are split; both sides keep
  writing; then the link heals. Metric ``converge_s``: time from the heal
  until every document is equal, running the real state-vector exchanges
  (sync request, diff, relays) in process.
"""

from __future__ import annotations

import time

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
        BenchResult("crdt", "partition", "converge_s", converge_after_partition(), "s"),
    ]
