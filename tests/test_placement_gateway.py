"""Placement on a real gateway process with real edge processes, through the CLI.

Swarm agents are added with ``edgeswarm agents add``; three edges connect;
``edges drain`` moves one edge's agents away; a kill -9 makes another DOWN after
``--edge-timeout``, and its agents are re-placed; every agent is owned by
exactly one live edge at the end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import placement_request
from edgeswarm.transport.quic import default_stack

from .conftest import ADMIN_ID, RunningGateway, edgeswarm_command, start_gateway, stop_process
from .test_integration import run_edge

pytestmark = pytest.mark.integration

AGENTS = 3000
EDGE_TIMEOUT_S = 1.0


def per_edge(shards: dict[str, Any]) -> dict[str, int]:
    """``shards``' agents per edge as a map (the wire carries a list: any number of edges)."""
    return {e["edge_id"]: e["agents"] for e in shards["per_edge"]}


@pytest.fixture
def placement_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    running = start_gateway(
        tmp_path / "gateway", "--edge-timeout", str(EDGE_TIMEOUT_S), "--idle-timeout", "5"
    )
    try:
        yield running
    finally:
        stop_process(running.process)


def cli(gateway: RunningGateway, key: Path, *args: str, check: bool = True) -> Any:
    result = subprocess.run(
        edgeswarm_command(
            *args,
            "--gateway",
            f"127.0.0.1:{gateway.port}",
            "--ca",
            str(gateway.ca),
            "--key",
            str(key),
            "--admin-id",
            ADMIN_ID,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if not check:
        return result
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def ask(gateway: RunningGateway, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    address = GatewayAddress(port=gateway.port, ca_file=gateway.ca, stack=default_stack())
    reply = asyncio.run(
        placement_request(address, op, args, key=gateway.admin_key, admin_id=ADMIN_ID)
    )
    assert reply.ok, reply.message
    return reply.result


def wait_for_edges(gateway: RunningGateway, want: dict[str, str], timeout: float = 30) -> Any:
    """Poll ``edges.list`` until the edges have the states in ``want`` (bounded in time)."""
    deadline = time.monotonic() + timeout
    while True:
        edges = ask(gateway, "edges.list")
        states = {e["edge_id"]: e["state"] for e in edges["edges"]}
        if all(states.get(name) == state for name, state in want.items()):
            return edges
        assert time.monotonic() < deadline, f"edges are {states}, want {want}"
        time.sleep(0.2)


def test_agents_edges_drain_and_failure_through_the_cli(
    placement_gateway: RunningGateway, tmp_path: Path
) -> None:
    gateway = placement_gateway
    key = tmp_path / "admin.key"
    gateway.admin_key.save(key)
    added = cli(
        gateway, key, "agents", "add", "--first-id", "0", "--count", str(AGENTS),
        "--policy", "forager", "--label", "zone=north", "--json",
    )  # fmt: skip
    assert added["added"] == AGENTS
    cli(gateway, key, "agents", "add", "--first-id", "5000", "--count", "2", "--policy",
        "sensor", "--pin", "edge-a", "--json")  # fmt: skip
    again = cli(gateway, key, "agents", "add", "--first-id", "10", "--count", "1",
                "--policy", "x", check=False)  # fmt: skip
    assert again.returncode == 1  # the gateway refused the operation
    assert again.stderr.startswith("error: ")
    assert "exist already" in again.stderr

    edges = [
        run_edge(gateway, name, agents=10, ticks=100_000, tick_hz=5)
        for name in ("edge-a", "edge-b", "edge-c")
    ]
    try:
        wait_for_edges(gateway, {"edge-a": "active", "edge-b": "active", "edge-c": "active"})
        shards = cli(gateway, key, "shards", "--json")
        assert shards["agents"] == AGENTS + 2
        assert shards["unowned"] == 0
        assert sum(per_edge(shards).values()) == AGENTS + 2
        assert shards["imbalance"] < 1.2
        on_b = per_edge(shards)["edge-b"]

        drained = cli(gateway, key, "edges", "drain", "edge-b", "--json")
        assert drained["moves"] == on_b
        listed = wait_for_edges(gateway, {"edge-b": "draining"})
        counts = {e["edge_id"]: e["agents"] for e in listed["edges"]}
        assert counts["edge-b"] == 0
        assert counts["edge-a"] + counts["edge-c"] == AGENTS + 2

        edges[2].kill()  # kill -9: no BYE; the session ends by the idle timeout (5 s)
        edges[2].wait()
        listed = wait_for_edges(gateway, {"edge-c": "down"}, timeout=60)
        counts = {e["edge_id"]: e["agents"] for e in listed["edges"]}
        assert counts == {"edge-a": AGENTS + 2, "edge-b": 0, "edge-c": 0}
        shards = ask(gateway, "shards")
        assert shards["unowned"] == 0
        assert shards["last_plan"]["agents"] > 0
        assert {b["kind"] for b in shards["last_plan"]["batches"]} == {"restore"}

        pinned = cli(gateway, key, "agents", "show", "5001", "--json")
        assert (pinned["owner"], pinned["pin"], pinned["policy"]) == ("edge-a", "edge-a", "sensor")
        listed_agents = cli(gateway, key, "agents", "list", "--limit", "3", "--json")
        assert listed_agents["total"] == AGENTS + 2
        assert [a["agent_id"] for a in listed_agents["agents"]] == [0, 1, 2]
        assert listed_agents["agents"][0]["labels"] == {"zone": "north"}

        cli(gateway, key, "edges", "undrain", "edge-b", "--json")
        listed = wait_for_edges(gateway, {"edge-b": "active"})
        counts = {e["edge_id"]: e["agents"] for e in listed["edges"]}
        assert counts["edge-b"] > 0
        assert counts["edge-a"] + counts["edge-b"] == AGENTS + 2

        weighed = cli(gateway, key, "edges", "weight", "edge-b", "2", "--json")
        assert weighed["weight"] == 2.0
        assert weighed["moves"] > 0
        tables = {  # the tables without --json, and what each must show
            ("shards",): "imbalance",
            ("edges", "list"): "down",
            ("agents", "list", "--limit", "2"): "forager",
            ("agents", "show", "5000"): "sensor",
            ("edges", "undrain", "edge-b"): "edge-b undrained",
        }
        for command, expected in tables.items():
            shown = cli(gateway, key, *command, check=False)
            assert shown.returncode == 0, shown.stderr
            assert expected in shown.stdout

        unknown = cli(gateway, key, "edges", "drain", "edge-z", check=False)
        assert unknown.returncode == 1
        assert "edge-z" in unknown.stderr
        assert len(unknown.stderr.strip().splitlines()) == 1

        url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        assert 'edgeswarm_placement_agents{edge_id="edge-c"} 0.0' in text
        assert "edgeswarm_placement_unowned_agents 0.0" in text
        assert 'edgeswarm_placement_moves_planned_total{kind="restore"}' in text
    finally:
        for process in edges:
            stop_process(process)


def test_the_epoch_survives_a_restart(tmp_path: Path) -> None:
    first = start_gateway(tmp_path / "gateway")
    try:
        ask(first, "agents.add", {"first_id": 0, "count": 10, "policy": "p"})
        edge = run_edge(first, "edge-a", agents=10, ticks=100_000, tick_hz=5)
        try:
            epoch = wait_for_edges(first, {"edge-a": "active"})["epoch"]
        finally:
            stop_process(edge)
    finally:
        stop_process(first.process)
    second = start_gateway(tmp_path / "gateway", port=0)
    try:
        shown = ask(second, "agents.show", {"agent_id": 3})
        assert shown["policy"] == "p"
        assert shown["epoch"] >= epoch
    finally:
        stop_process(second.process)
