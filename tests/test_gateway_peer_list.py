"""One --peer list for every replica of a StatefulSet: a gateway skips the entry
that names itself (first DNS label = --gateway-id) and links to the others."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edgeswarm.gateway.replication import names_this_gateway

from .conftest import start_gateway, stop_process


@pytest.mark.parametrize(
    ("host", "gateway_id", "itself"),
    [
        (
            "edgeswarm-gateway-0.edgeswarm-gateway-headless.edgeswarm.svc.cluster.local",
            "edgeswarm-gateway-0",
            True,
        ),
        ("edgeswarm-gateway-0", "edgeswarm-gateway-0", True),
        ("GW-A.example", "gw-a", True),
        (
            "edgeswarm-gateway-1.edgeswarm-gateway-headless.edgeswarm.svc.cluster.local",
            "edgeswarm-gateway-0",
            False,
        ),
        ("edgeswarm-gateway-00.example", "edgeswarm-gateway-0", False),
        ("gw.example", "gw.example", False),
        ("127.0.0.1", "127", False),
        ("::1", "::1", False),
    ],
)
def test_a_peer_names_this_gateway_by_its_first_label(
    host: str, gateway_id: str, itself: bool
) -> None:
    assert names_this_gateway(host, gateway_id) is itself


def _log_records(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def test_a_gateway_skips_itself_in_a_shared_peer_list(tmp_path: Path) -> None:
    itself = "edgeswarm-gateway-0.edgeswarm-gateway-headless.invalid:4433"
    other = "edgeswarm-gateway-1.edgeswarm-gateway-headless.invalid:4433"
    gateway = start_gateway(
        tmp_path / "gw", "--gateway-id", "edgeswarm-gateway-0", "--peer", itself, "--peer", other
    )
    try:
        deadline = time.monotonic() + 20
        while True:  # the link to the other peer runs (and fails: no such host)
            records = _log_records(gateway.log)
            if any(r.get("message") == "peer gateway unreachable; retrying" for r in records):
                break
            assert time.monotonic() < deadline, gateway.log.read_text()[-2000:]
            time.sleep(0.05)
        skipped = [
            r
            for r in records
            if r.get("message") == "peer is this gateway; not replicating with itself"
        ]
        assert [r["peer"] for r in skipped] == [itself]
        tried = {
            str(r.get("peer"))
            for r in records
            if r.get("message") == "peer gateway unreachable; retrying"
        }
        assert tried
        assert all("edgeswarm-gateway-1" in peer for peer in tried), tried
    finally:
        stop_process(gateway.process)
