"""Scenarios that fault the network between an edge and its gateway: random loss,
delay with jitter and reordering, a bandwidth cap, a partition that heals.

Loss, caps and partitions are nftables rules and a tbf qdisc on the loopback of the
scenario's own network namespace (the runner puts it there); delay and reordering
come from :class:`edgeswarm.chaos.relay.UdpRelay`. Each runs one edge through three
windows, before / during / after the fault, and reports the throughput of each.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeswarm.chaos.faults import Nftables, cap_loopback, uncap_loopback
from edgeswarm.chaos.processes import ProgressLines, start_edge, start_gateway, stop
from edgeswarm.chaos.relay import UdpRelay
from edgeswarm.chaos.verdict import delivery, finish, rate

LOAD = ("--agents", "1000", "--tick-hz", "50", "--drain-timeout", "90")
"""1 000 agents at 50 Hz in batches of 500: 100 batches and 50 000 observations a second."""


def _three_windows(
    work: Path,
    name: str,
    *,
    fault: Callable[[int], None],
    heal: Callable[[], None],
    fault_s: float,
    ticks: int,
    via: Callable[[int], tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """One edge streams for 1 s, then ``fault(gateway_port)`` for ``fault_s``, then
    ``heal()`` and the rest of ``ticks``. ``via``: the address the edge sends to, given
    the gateway's port (a relay), else the gateway itself."""
    gateway = start_gateway(work / "gw")
    host, port = via(gateway.port) if via else ("127.0.0.1", gateway.port)
    edge = start_edge(f"{host}:{port}", gateway.ca, gateway.edge_token(), work / "edge",
                      *LOAD, "--ticks", str(ticks))  # fmt: skip
    lines = ProgressLines(edge)
    try:
        start = lines.steady()
        in_flight_before = max(line["in_flight"] for line in lines.seen)
        fault_from = time.monotonic()
        fault(gateway.port)
        try:
            lines.for_seconds(fault_s)
        finally:
            heal()
        healed_at = time.monotonic()
        settle = max(in_flight_before, 8)
        lines.until(lambda line: line["in_flight"] <= settle and line["at"] > healed_at)
        recovered_at = lines.seen[-1]["at"]
        rest = lines.rest()
        returncode = edge.wait(30)
        summary = rest[-1]
        during = [line for line in rest if fault_from <= line["at"] <= healed_at]
        figures = delivery(gateway, summary, returncode=returncode,
                           sent_batches=summary["batches_sent"])  # fmt: skip
        figures.update(
            throughput_before=rate(rest, start, fault_from),
            throughput_during=rate(rest, fault_from, healed_at),
            throughput_after=rate(rest, recovered_at, rest[-2]["at"]),
            in_flight_during_max=max((line["in_flight"] for line in during), default=0),
            recovery_s=round(recovered_at - healed_at, 2),
            batches_resent=summary.get("batches_resent"),
            connects=summary.get("connects"),
        )
        return finish(name, figures)
    finally:
        stop(edge)
        stop(gateway.process)


def packet_loss_10(work: Path) -> dict[str, Any]:
    """10 % of the packets each way dropped at random for 4 s (nftables numgen)."""
    table = Nftables()
    try:
        return _three_windows(
            work, "packet_loss_10", ticks=350, fault_s=4.0,
            fault=lambda port: table.drop_percent(port, 10), heal=table.heal,
        )  # fmt: skip
    finally:
        table.close()


def bandwidth_cap(work: Path) -> dict[str, Any]:
    """Loopback capped at 4 Mbit/s for 4 s (tbf): less than the edge produces."""
    return _three_windows(work, "bandwidth_cap", ticks=350, fault_s=4.0,
                          fault=lambda _: cap_loopback("4mbit"), heal=uncap_loopback)  # fmt: skip


def partition_edge_gateway(work: Path) -> dict[str, Any]:
    """Every packet between the edge and its gateway dropped for 5 s, then healed: the
    edge spools meanwhile and replays, in order, each batch once."""
    table = Nftables()
    try:
        return _three_windows(work, "partition_edge_gateway", ticks=450, fault_s=5.0,
                              fault=table.partition, heal=table.heal)  # fmt: skip
    finally:
        table.close()


def latency_jitter_reorder(work: Path) -> dict[str, Any]:
    """The edge reaches its gateway through a relay that delays each datagram by
    50 ms ± 20 ms each way (uniform), so datagrams overtake each other, for the whole
    run; the fault window is when the relay delays (before and after it is direct-speed
    through the same relay: delay 0)."""
    relays: list[UdpRelay] = []

    def via(port: int) -> tuple[str, int]:
        relays.append(UdpRelay(("127.0.0.1", port), delay_s=0.0, jitter_s=0.0, seed=21))
        return relays[0].address

    def delay(_: int) -> None:
        relays[0].delay_s, relays[0].jitter_s = 0.050, 0.020

    def direct() -> None:
        relays[0].delay_s = relays[0].jitter_s = 0.0

    try:
        result = _three_windows(work, "latency_jitter_reorder", ticks=350, fault_s=4.0,
                                fault=delay, heal=direct, via=via)  # fmt: skip
        if relays:
            result["datagrams_relayed"] = relays[0].relayed
            result["datagrams_reordered"] = relays[0].reordered
            if relays[0].reordered == 0 and result["passed"]:
                result["passed"] = False
                result["failed_checks"].append("relay_reordered")
        return result
    finally:
        for relay in relays:
            relay.close()
