"""The module registry replicated between real gateway processes over real QUIC on
loopback (feature ``registry`` on the ``--peer`` link): one publish and one rollout
issued at gateway A reach an edge connected to gateway B, and a rollback at A is
fleet-wide; a gateway that was down during a publish catches up when it returns; a
manifest B does not trust is refused at B (metric, log line) and nothing changes there,
until B's operator trusts the key. Tampered chunks from a lying peer are in
``test_module_replication.py`` (no honest gateway sends one)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeswarm.chaos.counter_module import counter_wasm
from edgeswarm.identity import load_or_create_key, public_key_text
from edgeswarm.registry import ModuleStore
from edgeswarm.wire import Role
from tests.registry_fixtures import run_cli
from tests.test_daemon_endpoints import scrape
from tests.test_edge_operations import start_edge, wait_logged
from tests.test_module_processes import AGENTS, agents_on, edge, wait_for

from .conftest import RunningGateway, start_gateway, stop_process

pytestmark = pytest.mark.integration

MODULES = {"1.0.0": counter_wasm(1.0), "2.0.0": counter_wasm(2.0)}
DEADLINE_S = 90


@dataclass
class Fleet:
    """Gateway B, and how to start gateway A peered to it; the signed module files."""

    tmp_path: Path
    b: RunningGateway
    files: dict[str, Path]
    publisher_key: Path

    def start_a(self) -> RunningGateway:
        """Gateway A with ``--peer`` B (its identity enrolled at B as a gateway)."""
        a_dir = self.tmp_path / "a"
        a_dir.mkdir(exist_ok=True)
        self.b.enroll(load_or_create_key(a_dir / "identity.key"), "gw-a", Role.GATEWAY)
        return start_gateway(
            a_dir,
            *("--gateway-id", "gw-a", "--peer", f"127.0.0.1:{self.b.port}"),
            *("--peer-ca", str(self.b.ca)),
        )

    def trust(self, gateway: RunningGateway) -> None:
        key = public_key_text(load_or_create_key(self.publisher_key).public_key)
        run_cli("agents", "trust", "add", "--public-key", key, "--names", "counter",
                "--data-dir", str(gateway.data_dir))  # fmt: skip

    def publish(self, gateway: RunningGateway, version: str) -> None:
        run_cli("agents", "publish", str(self.files[version]), "--data-dir",
                str(gateway.data_dir), "--actor", "alice")  # fmt: skip


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    key = tmp_path / "publisher.key"
    load_or_create_key(key)
    files = {}
    for version, blob in MODULES.items():
        wasm = tmp_path / f"counter-{version}.wasm"
        wasm.write_bytes(blob)
        run_cli("agents", "sign", str(wasm), "--name", "counter", "--version", version,
                "--key", str(key))  # fmt: skip
        files[version] = wasm
    running = Fleet(tmp_path, start_gateway(tmp_path / "b", "--gateway-id", "gw-b"), files, key)
    try:
        yield running
    finally:
        stop_process(running.b.process)  # the one started last


def registry_of(gateway: RunningGateway) -> ModuleStore:
    return ModuleStore(gateway.data_dir / "modules.db")


def eventually(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def deployed(gateway: RunningGateway) -> tuple[str, str | None] | None:
    """``(version, rollout's to_version)`` of counter at ``gateway``; None: not deployed."""
    with registry_of(gateway) as store:
        found = store.deployment("counter")
    if found is None:
        return None
    return found.version, found.plan.to_version if found.plan else None


def metric(gateway: RunningGateway, series: str) -> float:
    for line in scrape(gateway.metrics_port).splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_publish_and_rollout_at_a_reach_an_edge_on_b_and_a_rollback_at_a_is_fleet_wide(
    fleet: Fleet, tmp_path: Path
) -> None:
    b = fleet.b
    fleet.trust(b)  # trust is each gateway's own (docs/modules.md)
    a = fleet.start_a()
    try:
        fleet.trust(a)
        fleet.publish(a, "1.0.0")
        fleet.publish(a, "2.0.0")
        run_cli("agents", "rollout", "counter", "1.0.0", "--data-dir", str(a.data_dir))
        eventually("1.0.0 deployed at b", lambda: deployed(b) == ("1.0.0", None))
        options = edge(b, tmp_path / "edge-b", fleet.files["1.0.0"], "edge-b")
        process = start_edge(b, tmp_path / "edge-b", *options)
        try:
            wait_logged(tmp_path / "edge-b.log", "module applied", process)
            wait_for("every agent on 1.0.0", lambda: agents_on(b, "1.0.0") == AGENTS, process)
            run_cli("agents", "rollout", "counter", "2.0.0", "--hold", "2",
                    "--data-dir", str(a.data_dir))  # fmt: skip
            # b's edge reports judge the rollout at b; its completion comes back to a
            wait_for("every agent on 2.0.0", lambda: agents_on(b, "2.0.0") == AGENTS, process)
            eventually("2.0.0 complete at a", lambda: deployed(a) == ("2.0.0", None))
            run_cli("agents", "rollback", "counter", "--data-dir", str(a.data_dir))
            wait_for("every agent back on 1.0.0 at b",
                     lambda: agents_on(b, "1.0.0") == AGENTS, process)  # fmt: skip
        finally:
            stop_process(process)
        assert deployed(b) == deployed(a) == ("1.0.0", None)
        with registry_of(b) as store:
            actors = {h.actor for h in store.history("counter") if h.action == "replicate"}
            assert actors == {"peer:gw-a"}
        received = "edgeswarm_gateway_module_replication_modules_received_total"
        assert metric(b, received) == 2
    finally:
        stop_process(a.process)


def test_a_gateway_down_during_a_publish_catches_up_when_it_returns(fleet: Fleet) -> None:
    b = fleet.b
    fleet.trust(b)
    a = fleet.start_a()
    try:
        fleet.trust(a)
        eventually(
            "a linked to b", lambda: metric(b, "edgeswarm_gateway_module_replication_peers") == 1
        )
        port = b.port
        stop_process(b.process)  # b is down while a publishes and rolls out
        fleet.publish(a, "1.0.0")
        run_cli("agents", "rollout", "counter", "1.0.0", "--data-dir", str(a.data_dir))
        with registry_of(b) as store:
            assert store.refs() == {}
        fleet.b = start_gateway(b.data_dir, "--gateway-id", "gw-b", port=port)
        eventually("b caught up", lambda: deployed(fleet.b) == ("1.0.0", None))
        with registry_of(fleet.b) as store, registry_of(a) as origin:
            assert store.refs() == origin.refs()
            assert store.deployment_records() == origin.deployment_records()
    finally:
        stop_process(a.process)


def test_an_untrusted_manifest_from_a_peer_is_refused_at_b_until_b_trusts_the_key(
    fleet: Fleet,
) -> None:
    b = fleet.b  # b trusts nobody
    a = fleet.start_a()
    try:
        fleet.trust(a)
        fleet.publish(a, "1.0.0")
        run_cli("agents", "rollout", "counter", "1.0.0", "--data-dir", str(a.data_dir))
        refused = 'edgeswarm_gateway_module_replication_refused_total{reason="untrusted"}'
        eventually("refused at b", lambda: metric(b, refused) >= 1)
        with registry_of(b) as store:
            assert store.refs() == {}
            assert store.deployments() == []
            assert [h.action for h in store.history()] == []
        assert "module from peer gateway refused" in b.log.read_text()
        fleet.trust(b)  # b's operator trusts the key: the link, still up, fetches it now
        eventually("1.0.0 deployed at b", lambda: deployed(b) == ("1.0.0", None))
    finally:
        stop_process(a.process)
