"""Shared swarm state through real gateways and edges over QUIC on loopback."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.admin import fetch_state
from edgeswarm.client.session import GatewayClient
from edgeswarm.edge.state_link import StateLink
from edgeswarm.identity import KeyPair
from edgeswarm.state import SwarmDocument
from edgeswarm.transport import quic
from edgeswarm.transport.quic import default_stack
from edgeswarm.wire import (
    FEATURE_STATE,
    PROTOCOL_VERSION,
    Error,
    ErrorCode,
    Hello,
    Role,
    StateSyncRequest,
    StateUpdate,
    Welcome,
    encode_frame,
)

from .conftest import ADMIN_ID, RunningGateway, edgeswarm_command, start_gateway, stop_process
from .gateway_harness import wait_until
from .raw_peer import RawPeer
from .wasm_fixtures import policy_wat

pytestmark = pytest.mark.integration

COUNTING = policy_wat(
    """(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32) (param $act i32)
      (result i32)
      (drop (call $counter_add (i32.const 2096) (i32.const 11) (i64.extend_i32_u (local.get $n))))
      (i32.const 0))""",
    name="counting",
    descriptor={"counters": ["fleet/steps"]},
    imports='(import "es" "counter_add" (func $counter_add (param i32 i32 i64) (result i32)))',
    extra='(data (i32.const 2096) "fleet/steps")',
)
"""Adds n (the agents it steps) to counter ``fleet/steps`` on every tick."""


async def state_of(gateway: RunningGateway) -> dict[str, Any]:
    _, snapshot = await fetch_state(
        GatewayAddress(port=gateway.port, ca_file=gateway.ca, stack=default_stack()),
        key=gateway.admin_key,
        admin_id=ADMIN_ID,
    )
    return snapshot


@asynccontextmanager
async def state_client(
    gateway: RunningGateway, edge_id: str, directory: Path
) -> AsyncIterator[StateLink]:
    """An in-process edge session with a live StateLink (no agents)."""
    key = KeyPair.generate()
    gateway.enroll(key, edge_id)
    with StateLink(directory, writer_id=edge_id, interval_s=0.02) as link:
        hello = Hello(
            version=PROTOCOL_VERSION,
            role=Role.EDGE,
            peer_id=edge_id,
            public_key=key.public_key,
            features=(FEATURE_STATE,),
            state_incarnation=link.document.incarnation,  # binds its writer id to edge_id
        )
        client = GatewayClient(hello, key)
        link.attach(client)
        async with quic.connect(
            "127.0.0.1", gateway.port, ca_file=gateway.ca, handler=client, stack=default_stack()
        ):
            await client.wait_welcomed()
            task = asyncio.create_task(link.run())
            try:
                await wait_until(lambda: link.synced)
                yield link
                await link.flush()
            finally:
                task.cancel()
                client.close("done")


def run_edge_process(
    gateway: RunningGateway, edge_id: str, work: Path, *extra: str
) -> dict[str, Any]:
    out, err = work / f"{edge_id}.out", work / f"{edge_id}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        code = subprocess.call(
            edgeswarm_command(
                "edge",
                "--edge-id",
                edge_id,
                "--ca",
                str(gateway.ca),
                "--gateway",
                f"127.0.0.1:{gateway.port}",
                "--agents",
                "10",
                "--metrics-port",
                "-1",
                "--progress-interval",
                "0",
                "--data-dir",
                str(work / edge_id),
                "--join-token",
                gateway.edge_token(),
                *extra,
            ),
            stdout=stdout,
            stderr=stderr,
            timeout=60,
        )
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")
    ]
    summaries = [line for line in lines if line.get("event") == "summary"]
    assert code == 0, err.read_text()[-2000:]
    assert summaries, err.read_text()[-2000:]
    return summaries[-1]


def test_edge_process_state_reaches_gateway_and_other_edge(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    policy = tmp_path / "counting.wat"
    policy.write_bytes(COUNTING)
    first = run_edge_process(
        gateway, "edge-a", tmp_path, "--policy", str(policy), "--ticks", "5", "--tick-hz", "0"
    )
    assert first["swarm_state"]["counters"] == {"fleet/steps": 50}

    async def gateway_has_it() -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:
            snapshot = await state_of(gateway)
            if snapshot["counters"].get("fleet/steps") == 50 or time.monotonic() > deadline:
                return snapshot

    assert asyncio.run(gateway_has_it())["counters"] == {"fleet/steps": 50}
    # another edge (boids policy, writes nothing) learns it from the gateway
    second = run_edge_process(gateway, "edge-b", tmp_path, "--duration", "1.0")
    assert second["swarm_state"]["counters"] == {"fleet/steps": 50}


def test_live_propagation_between_connected_edges(gateway: RunningGateway, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            state_client(gateway, "live-a", tmp_path / "a") as a,
            state_client(gateway, "live-b", tmp_path / "b") as b,
        ):
            for _ in range(100):
                a.swarm.counter_add("g/hits", 1)
            a.swarm.set_add("g/seen", "res-1")
            b.swarm.flag_set("g/evade", True)
            b.swarm.counter_add("g/hits", -10)

            def converged(link: StateLink) -> bool:
                return (
                    link.document.counter_value("g/hits") == 90
                    and link.document.flag_get("g/evade") is True
                    and link.document.set_items("g/seen") == {"res-1"}
                )

            for link in (a, b):
                await wait_until(functools.partial(converged, link))
            assert a.updates_sent < 20  # batched per interval, not one per op
        snapshot = await state_of(gateway)
        assert snapshot == {
            "counters": {"g/hits": 90},
            "sets": {"g/seen": ["res-1"]},
            "flags": {"g/evade": True},
        }

    asyncio.run(scenario())
    # each edge's edits left as one update (made in one loop turn) and were applied at the
    # gateway; each broadcast goes to both edges (the other's edits, the sender's echo),
    # one per broadcast window: 2 if both updates fell into one window, else 4
    assert gateway_metric(gateway, "edgeswarm_gateway_state_updates_applied_total") == 2
    assert gateway_metric(gateway, "edgeswarm_gateway_state_updates_sent_total") in (2, 4)
    deadline = time.monotonic() + 5  # every state session has ended: none left attached
    while gateway_metric(gateway, "edgeswarm_gateway_state_peers") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway_metric(gateway, "edgeswarm_gateway_state_peers") == 0


def gateway_metric(gateway: RunningGateway, name: str) -> float:
    url = f"http://127.0.0.1:{gateway.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not exposed")


def test_gateway_restart_keeps_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "gw"
    running = start_gateway(data_dir)
    try:

        async def write() -> None:
            async with state_client(running, "writer", tmp_path / "w") as link:
                link.swarm.counter_add("g/total", 42)
                link.swarm.set_add("g/found", "x")
                await wait_until(lambda: link.synced)
            snapshot = await state_of(running)
            assert snapshot["counters"] == {"g/total": 42}

        asyncio.run(write())
    finally:
        stop_process(running.process)
    restarted = start_gateway(data_dir)
    try:
        snapshot = asyncio.run(state_of(restarted))
        assert snapshot["counters"] == {"g/total": 42}
        assert snapshot["sets"] == {"g/found": ["x"]}
    finally:
        stop_process(restarted.process)


def test_malformed_update_refused_document_untouched(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with state_client(gateway, "good", tmp_path / "good") as good:
            good.swarm.counter_add("g/c", 7)
            await wait_until_state(gateway, lambda s: s["counters"] == {"g/c": 7})

            peer, key = RawPeer(), KeyPair.generate()
            gateway.enroll(key, "vandal")
            async with quic.connect(
                "127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer, stack=default_stack()
            ):
                # it writes as SwarmDocument("vandal"), incarnation 0: bound to it here
                await peer.handshake(key, "vandal", features=(FEATURE_STATE,), state_incarnation=0)
                welcome = await peer.wait_for(Welcome)
                assert welcome.features == (FEATURE_STATE,)
                peer.send(encode_frame(StateUpdate(update=b"\x07garbage-not-yrs")))
                error = await peer.wait_for(Error)
                assert error.code == ErrorCode.MALFORMED_UPDATE
                # the session goes on: a valid update from the same peer is merged
                doc = SwarmDocument("vandal")
                doc.counter_add("g/c", 1)
                peer.send(encode_frame(StateSyncRequest(state_vector=doc.state_vector())))
                peer.send(encode_frame(StateUpdate(update=doc.encode_update())))
                await wait_until(lambda: good.document.counter_value("g/c") == 8)

            good.swarm.counter_add("g/c", 1)  # the other edge was never affected
            await wait_until(lambda: good.synced)
        after = await state_of(gateway)
        assert after["counters"] == {"g/c": 9}
        log = gateway.log.read_text()
        assert "state frame refused" in log
        assert "MALFORMED_UPDATE" in log

    asyncio.run(scenario())


def test_two_gateways_converge(tmp_path: Path) -> None:
    first = start_gateway(tmp_path / "gw-a", "--gateway-id", "gw-a")
    second = None
    identity = KeyPair.generate()
    (tmp_path / "gw-b").mkdir()
    identity.save(tmp_path / "gw-b" / "identity.key")
    first.enroll(identity, "gw-b", Role.GATEWAY)
    try:
        second = start_gateway(
            tmp_path / "gw-b",
            "--gateway-id",
            "gw-b",
            "--peer",
            f"127.0.0.1:{first.port}",
            "--peer-ca",
            str(first.ca),
        )
        running_b = second

        async def scenario() -> None:
            async with (
                state_client(first, "edge-a", tmp_path / "ea") as a,
                state_client(running_b, "edge-b", tmp_path / "eb") as b,
            ):
                a.swarm.counter_add("g/n", 3)
                a.swarm.flag_set("g/stop", False)
                b.swarm.counter_add("g/n", 4)
                b.swarm.set_add("g/seen", "b-1")

                def converged(link: StateLink) -> bool:
                    return (
                        link.document.counter_value("g/n") == 7
                        and link.document.set_items("g/seen") == {"b-1"}
                        and link.document.flag_get("g/stop") is False
                    )

                for link in (a, b):
                    await wait_until(functools.partial(converged, link), timeout=15)
            snapshots = [await state_of(first), await state_of(running_b)]
            assert snapshots[0] == snapshots[1]
            assert snapshots[0]["counters"] == {"g/n": 7}

        asyncio.run(scenario())
    finally:
        stop_process(first.process)
        if second is not None:
            stop_process(second.process)


def test_cli_state_get_and_watch_json(gateway: RunningGateway, tmp_path: Path) -> None:
    async def write() -> None:
        async with state_client(gateway, "cli-src", tmp_path / "src") as link:
            link.swarm.counter_add("ops/jobs", 5)
            link.swarm.flag_set("ops/maintenance", True)
            link.swarm.counter_add("other/x", 1)
        await wait_until_state(gateway, lambda s: s["counters"].get("other/x") == 1)

    asyncio.run(write())
    admin_key = tmp_path / "admin.key"
    gateway.admin_key.save(admin_key)
    common = [
        "--ca",
        str(gateway.ca),
        "--gateway",
        f"127.0.0.1:{gateway.port}",
        "--key",
        str(admin_key),
        "--admin-id",
        ADMIN_ID,
        "--json",
    ]
    results = []
    for args in (
        ["get", *common],
        ["get", "ops", *common],
        ["watch", "ops/jobs", "--count", "1", *common],
    ):
        out, err = tmp_path / "cli.out", tmp_path / "cli.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            code = subprocess.call(
                edgeswarm_command("state", *args), stdout=stdout, stderr=stderr, timeout=60
            )
        assert code == 0, err.read_text()
        results.append([json.loads(line) for line in out.read_text().splitlines()])
    [everything], [ops], [watched] = results
    assert everything["gateway_id"] == "gateway-0"
    assert everything["counters"] == {"ops/jobs": 5, "other/x": 1}
    assert everything["flags"] == {"ops/maintenance": True}
    assert ops["counters"] == {"ops/jobs": 5}
    assert watched["counters"] == {"ops/jobs": 5}
    assert watched["flags"] == {}
    assert watched["seq"] == 1


async def wait_until_state(
    gateway: RunningGateway, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        snapshot = await state_of(gateway)
        if predicate(snapshot):
            return snapshot
        if time.monotonic() > deadline:
            raise AssertionError(f"gateway state not reached: {snapshot}")
        await asyncio.sleep(0.05)
