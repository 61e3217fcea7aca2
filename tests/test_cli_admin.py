"""``edgeswarm status`` and ``edgeswarm state``: their tables and their error exits, each
command a real process against a running gateway."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from edgeswarm.client import GatewayAddress
from edgeswarm.client.admin import fetch_state
from edgeswarm.identity import KeyPair
from edgeswarm.state import SwarmDocument
from edgeswarm.transport import quic
from edgeswarm.wire import FEATURE_STATE, StateSyncRequest, StateUpdate, Welcome, encode_frame

from .conftest import ADMIN_ID, RunningGateway, edgeswarm_command, free_udp_port
from .raw_peer import RawPeer

pytestmark = pytest.mark.integration

MEMBERS = [f"r{n:02d}" for n in range(10)]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """``edgeswarm ARGS`` in a process of its own; rich tables 200 columns wide."""
    return subprocess.run(
        edgeswarm_command(*args),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


async def write_state(gateway: RunningGateway) -> None:
    """An edge session puts a counter, a 10-member set and a flag into the gateway's state."""
    peer, key = RawPeer(), KeyPair.generate()
    gateway.enroll(key, "writer")
    doc = SwarmDocument("writer")
    doc.counter_add("ops/jobs", 1234)
    for member in MEMBERS:
        doc.set_add("ops/seen", member)
    doc.flag_set("ops/paused", False)
    doc.counter_add("other/x", 1)
    async with quic.connect("127.0.0.1", gateway.port, ca_file=gateway.ca, handler=peer):
        # its HELLO binds the writer id of its document to it (state ownership)
        await peer.handshake(
            key, "writer", features=(FEATURE_STATE,), state_incarnation=doc.incarnation
        )
        await peer.wait_for(Welcome)
        peer.send(encode_frame(StateSyncRequest(state_vector=doc.state_vector())))
        peer.send(encode_frame(StateUpdate(update=doc.encode_update())))
        address = GatewayAddress(port=gateway.port, ca_file=gateway.ca, stack=quic.default_stack())
        async with asyncio.timeout(10):
            while True:
                _, snapshot = await fetch_state(address, key=gateway.admin_key, admin_id=ADMIN_ID)
                if snapshot == doc.snapshot():
                    return
                await asyncio.sleep(0.05)


@pytest.fixture
def admin_key(gateway: RunningGateway, tmp_path: Path) -> Path:
    path = tmp_path / "admin.key"
    gateway.admin_key.save(path)
    return path


def test_status_and_state_print_tables(gateway: RunningGateway, admin_key: Path) -> None:
    asyncio.run(write_state(gateway))
    common = ("--ca", str(gateway.ca), "--gateway", f"127.0.0.1:{gateway.port}",
              "--key", str(admin_key), "--admin-id", ADMIN_ID)  # fmt: skip

    status = run("status", *common)
    assert status.returncode == 0, status.stderr
    assert "gateway gateway-0 (up " in status.stdout
    header, row = (
        line for line in status.stdout.splitlines() if "edge" in line or "writer" in line
    )
    for column in ("edge", "connected", "address", "last seen", "agents", "batches", "last seq"):
        assert column in header
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:2] == ["writer", "no"]
    assert cells[2].startswith("127.0.0.1:")  # where it connected from
    assert cells[3].endswith(" s ago")  # when it was last seen
    assert cells[4:] == ["1", "0", "0", "0", "0"]  # its HELLO said 1 agent

    got = run("state", "get", *common)
    assert got.returncode == 0, got.stderr
    text = got.stdout
    assert "swarm state of gateway-0" in text
    rows = {
        tuple(cell.strip() for cell in line.split("│")[1:-1])
        for line in text.splitlines()
        if line.startswith("│")
    }
    shown = ", ".join(MEMBERS[:8])
    assert rows >= {
        ("counter", "ops/jobs", "1,234"),
        ("counter", "other/x", "1"),
        ("set", "ops/seen", f"10: {shown}, … (+2)"),
        ("flag", "ops/paused", "off"),
    }

    watched = run("state", "watch", "ops/jobs", "--count", "1", "--duration", "30", *common)
    assert watched.returncode == 0, watched.stderr
    assert "snapshot 1/1" in watched.stdout
    assert "1,234" in watched.stdout
    assert "other/x" not in watched.stdout  # KEY selects
    assert watched.stdout.strip().splitlines()[-1].startswith("1 snapshot(s) in ")


def test_status_and_state_fail_with_one_line_and_their_exit_status(
    gateway: RunningGateway, admin_key: Path, tmp_path: Path
) -> None:
    port = free_udp_port()
    stranger = tmp_path / "stranger.key"
    KeyPair.generate().save(stranger)
    missing = tmp_path / "missing.key"
    here = f"127.0.0.1:{gateway.port}"
    nowhere = f"127.0.0.1:{port}"
    ca = ("--ca", str(gateway.ca))
    # docs/operations.md: 1 it could not do its job, 2 a wrong command line, 3 refused
    cases = [
        (("status", *ca, "--gateway", nowhere, "--key", str(admin_key)),
         1, f"error: gateway {nowhere}: "),
        (("state", "get", *ca, "--gateway", nowhere, "--key", str(admin_key)),
         1, f"error: gateway {nowhere}: "),
        (("status", *ca, "--gateway", here, "--key", str(stranger)),
         3, f"error: gateway {here}: the gateway refused 'admin': "),
        (("state", "watch", *ca, "--gateway", here, "--key", str(stranger), "--count", "1"),
         3, f"error: gateway {here}: the gateway refused 'admin': "),
        (("status", *ca, "--gateway", here, "--key", str(missing)),
         2, f"error: --key: no file {missing}"),
        (("state", "get", *ca, "--gateway", here, "--key", str(missing)),
         2, f"error: --key: no file {missing}"),
    ]  # fmt: skip
    for args, code, message in cases:
        result = run(*args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(message), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        if code == 3:
            assert "UNKNOWN_PEER" in result.stderr  # a refusal, not an outage
    usage = run("status", *ca, "--gateway", "127.0.0.1:70000", "--key", str(admin_key))
    assert usage.returncode == 2
    assert "--gateway '127.0.0.1:70000': the port must be in 1..65535" in usage.stderr
