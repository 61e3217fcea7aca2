"""Module distribution between real processes over real QUIC: ``edgeswarm gateway`` serves
its registry, ``edgeswarm edge --module`` fetches, verifies, hot-swaps and reports,
``edgeswarm agents`` publishes and rolls out.

Publish v1 with the CLI, the edge runs it; roll v2 out, the edge swaps without an agent
losing its state; a trapping v3 is rolled back by the gateway within its bound and no
agent loses more than the ticks it trapped in; an edge offline during a rollout catches
up when it returns; the gateway's per-version metrics say who runs what.

The module counts its own steps in ``state[0]`` and writes the count and its version
(``act[1]``) as actions, which ``--actions-out`` records tick by tick: state kept across
a swap shows as a count that goes on.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wasmtime

from edgeswarm.agents_wasm import module_path
from edgeswarm.chaos.counter_module import counter_wasm, recorded_counts
from edgeswarm.identity import load_or_create_key
from edgeswarm.registry import ModuleStore
from tests.registry_fixtures import run_cli
from tests.test_daemon_endpoints import sample, scrape
from tests.test_edge_operations import start_edge, summary_of, wait_logged
from tests.test_module_rollout import COUNT_STEP
from tests.wasm_fixtures import policy_wat

from .conftest import RunningGateway, start_gateway, stop_process

pytestmark = pytest.mark.integration

AGENTS = 200
REPORT_TICKS = 2
WINDOW = 3
"""Reports a rollout judges over: a version that faults from its first tick is rolled
back within WINDOW reports of REPORT_TICKS ticks each."""


MODULES = {"1.0.0": counter_wasm(1.0), "2.0.0": counter_wasm(2.0), "3.0.0": counter_wasm(None)}
"""The counter (:mod:`edgeswarm.chaos.counter_module`): 2.0.0 counts like 1.0.0 with
another version marker, 3.0.0 traps."""


def published(
    gateway: RunningGateway, tmp_path: Path, name: str, modules: dict[str, bytes]
) -> dict[str, Path]:
    """Publish ``modules`` (version -> blob) as ``name`` with the CLI, signed by a trusted
    key, and deploy the first; the module files."""
    from edgeswarm.identity import public_key_text

    where = ("--data-dir", str(gateway.data_dir))
    key = tmp_path / "publisher.key"
    public_key = load_or_create_key(key).public_key
    run_cli("agents", "trust", "add", "--public-key", public_key_text(public_key),
            "--names", name, *where)  # fmt: skip
    files = {}
    for version, blob in modules.items():
        wasm = tmp_path / f"{name}-{version}.wasm"
        wasm.write_bytes(blob)
        run_cli("agents", "sign", str(wasm), "--name", name, "--version", version,
                "--key", str(key))  # fmt: skip
        run_cli("agents", "publish", str(wasm), *where, "--actor", "alice")
        files[version] = wasm
    run_cli("agents", "rollout", name, next(iter(modules)), *where, "--actor", "ops")
    return files


@pytest.fixture
def registry_gateway(tmp_path: Path) -> Iterator[tuple[RunningGateway, dict[str, Path]]]:
    """A gateway whose registry holds counter 1.0.0, 2.0.0 and 3.0.0, published with the
    CLI by a trusted key, 1.0.0 deployed; and the module files."""
    gateway = start_gateway(tmp_path / "gateway")
    try:
        where = ("--data-dir", str(gateway.data_dir))
        key = tmp_path / "publisher.key"
        public_key = load_or_create_key(key).public_key
        from edgeswarm.identity import public_key_text

        run_cli("agents", "trust", "add", "--public-key", public_key_text(public_key),
                "--names", "counter", *where)  # fmt: skip
        files = {}
        for version, blob in MODULES.items():
            wasm = tmp_path / f"counter-{version}.wasm"
            wasm.write_bytes(blob)
            run_cli("agents", "sign", str(wasm), "--name", "counter", "--version", version,
                    "--key", str(key))  # fmt: skip
            run_cli("agents", "publish", str(wasm), *where, "--actor", "alice")
            files[version] = wasm
        run_cli("agents", "rollout", "counter", "1.0.0", *where, "--actor", "ops")
        yield gateway, files
    finally:
        stop_process(gateway.process)


def edge(
    gateway: RunningGateway, data_dir: Path, bootstrap: Path, name: str, module: str = "counter"
) -> list[str]:
    """Options of an edge that runs registry module ``module`` in its only slot."""
    data_dir.mkdir(parents=True, exist_ok=True)
    gateway.enroll(load_or_create_key(data_dir / "edge.key"), name)
    return [
        *("--edge-id", name, "--policy", str(bootstrap), "--module", module),
        *("--module-report-ticks", str(REPORT_TICKS), "--tick-hz", "20"),
        *("--actions-out", str(data_dir.parent / f"{name}.act"), "--duration", "300"),
    ]


def wait_for(what: str, condition: Callable[[], bool], process: subprocess.Popen[str]) -> None:
    """Until ``condition()`` holds (bounded), the edge still running."""
    deadline = time.monotonic() + 90
    while not condition():
        assert process.poll() is None, f"the edge ended while waiting for {what}"
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def agents_on(gateway: RunningGateway, version: str, module: str = "counter") -> float:
    """``edgeswarm_module_agents`` of ``module@version`` on the gateway (-1: no sample)."""
    series = f'edgeswarm_module_agents{{module="{module}",version="{version}"}}'
    for line in scrape(gateway.metrics_port).splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return -1


def stopped(process: subprocess.Popen[str]) -> dict[str, Any]:
    """SIGTERM the edge; its summary line."""
    process.send_signal(signal.SIGTERM)
    return summary_of(process)


def history(gateway: RunningGateway, module: str = "counter") -> list[tuple[str, str, str]]:
    with ModuleStore(gateway.data_dir / "modules.db") as store:
        return [(h.action, h.actor, h.version) for h in store.history(module)]


def test_rollout_v2_swaps_keeping_state_and_a_trapping_v3_rollback_within_the_bound(
    registry_gateway: tuple[RunningGateway, dict[str, Path]], tmp_path: Path
) -> None:
    gateway, files = registry_gateway
    where = ("--data-dir", str(gateway.data_dir))
    log = tmp_path / "edge-a.log"
    process = start_edge(gateway, tmp_path / "edge-a", *edge(gateway, tmp_path / "edge-a",
                                                            files["1.0.0"], "edge-a"))  # fmt: skip
    try:
        wait_logged(log, "module applied", process)  # v1 from the registry
        run_cli("agents", "rollout", "counter", "2.0.0", "--stages", "50,100", "--hold", "3",
                *where, "--actor", "ops")  # fmt: skip
        wait_for("v2 complete", lambda: ("complete", "rollout", "2.0.0") in history(gateway),
                 process)  # fmt: skip
        wait_for("every agent on v2", lambda: agents_on(gateway, "2.0.0") == AGENTS, process)

        run_cli("agents", "rollout", "counter", "3.0.0", "--share", "0.5", "--hold", "50",
                "--window", str(WINDOW), "--min-agent-ticks", "10", *where)  # fmt: skip
        wait_for("v3 rolled back", lambda: history(gateway)[-1][:2] == ("rollback", "rollout"),
                 process)  # fmt: skip
        wait_for("every agent back on v2", lambda: agents_on(gateway, "2.0.0") == AGENTS, process)
        assert agents_on(gateway, "3.0.0") == -1  # no longer assigned: no series
        page = scrape(gateway.metrics_port)
        assert sample(page, 'edgeswarm_module_faults_total{module="counter",version="3.0.0"}') > 0
        assert sample(page, 'edgeswarm_module_faults_total{module="counter",version="2.0.0"}') == 0
        summary = stopped(process)
    finally:
        stop_process(process)
    assert summary["modules"] == {"counter": {"2.0.0": AGENTS}}

    ticks, count, marker = recorded_counts(tmp_path / "edge-a.act")
    assert np.array_equal(ticks, np.arange(len(ticks)))
    on_v2 = np.flatnonzero((marker == 2.0).any(axis=1))
    first_v2 = int(on_v2[0])
    # the swap from the bootstrap to v1 and from v1 to v2 kept every agent's count
    assert np.all(count[:first_v2] == (ticks[:first_v2, None] + 1))
    trapped = (marker == 0.0).any(axis=0)  # agents that ran v3 (quarantined: zero actions)
    assert 0.3 * AGENTS < trapped.sum() < 0.7 * AGENTS
    last = count[-1]
    assert np.all(last[~trapped] == ticks[-1] + 1)  # the others never missed a step
    lost = ticks[-1] + 1 - last[trapped]
    assert np.all(lost >= 1)
    # rolled back within WINDOW reports (plus the ticks the assignment takes to arrive)
    assert np.all(lost <= (WINDOW + 2) * REPORT_TICKS + 10)


def test_an_edge_offline_during_a_rollout_catches_up_on_reconnect(
    registry_gateway: tuple[RunningGateway, dict[str, Path]], tmp_path: Path
) -> None:
    gateway, files = registry_gateway
    where = ("--data-dir", str(gateway.data_dir))
    options = edge(gateway, tmp_path / "edge-b", files["1.0.0"], "edge-b")
    first = start_edge(gateway, tmp_path / "edge-b", *options)
    try:
        wait_logged(tmp_path / "edge-b.log", "module applied", first)
        assert stopped(first)["modules"] == {"counter": {"1.0.0": AGENTS}}
    finally:
        stop_process(first)

    # edge-b is offline: the rollout completes on edge-c
    online = start_edge(gateway, tmp_path / "edge-c",
                        *edge(gateway, tmp_path / "edge-c", files["1.0.0"], "edge-c"))  # fmt: skip
    try:
        run_cli("agents", "rollout", "counter", "2.0.0", "--hold", "2", *where)
        wait_for("v2 complete", lambda: ("complete", "rollout", "2.0.0") in history(gateway),
                 online)  # fmt: skip
    finally:
        stop_process(online)

    again = start_edge(gateway, tmp_path / "edge-b", *options)
    try:
        wait_logged(tmp_path / "edge-b.log", '"2.0.0"', again)
        assert stopped(again)["modules"] == {"counter": {"2.0.0": AGENTS}}
    finally:
        stop_process(again)


ODOMETER = {
    "1.0.0": module_path("odometer_v1").read_bytes(),
    "2.0.0": module_path("odometer_v2").read_bytes(),
    "3.0.0": bytes(
        wasmtime.wat2wasm(
            policy_wat(COUNT_STEP, descriptor={"name": "odometer", "state_dim": 2}).decode()
        )
    ),
}
"""The C example across a state layout change (ABI.md, "Hot swap and state layout"):
1.0.0 counts in one state f32, 2.0.0 keeps two and migrates 1.0.0's state with
es_migrate, 3.0.0 keeps two and exports no es_migrate."""


def everyone_on(gateway: RunningGateway, version: str) -> bool:
    return agents_on(gateway, version, "odometer") == AGENTS


def log_records(log: Path, message: str) -> list[dict[str, Any]]:
    """The edge's JSON log records with ``message``."""
    lines = log.read_text().splitlines()
    records = (json.loads(line) for line in lines if line[:1] == "{")
    return [record for record in records if record.get("message") == message]


def runs_only(log: Path, version: str) -> bool:
    """Whether the edge last applied an assignment with every agent on ``version`` alone
    (after a rollout completes: the gateway's history and metrics know it before the
    edge has applied it)."""
    applied = log_records(log, "module applied")
    return bool(applied) and applied[-1]["versions"] == {version: AGENTS}


def test_rollout_across_a_state_layout_migrates_every_agent_between_real_processes(
    tmp_path: Path,
) -> None:
    gateway = start_gateway(tmp_path / "gateway")
    try:
        files = published(gateway, tmp_path, "odometer", ODOMETER)
        where = ("--data-dir", str(gateway.data_dir))
        log = tmp_path / "edge-m.log"
        options = edge(gateway, tmp_path / "edge-m", files["1.0.0"], "edge-m", "odometer")
        process = start_edge(gateway, tmp_path / "edge-m", *options)
        try:
            wait_logged(log, "module applied", process)  # 1.0.0 from the registry
            # a new layout without es_migrate: refused with the clear error, v1 runs on
            run_cli("agents", "rollout", "odometer", "3.0.0", "--hold", "3", *where)
            wait_logged(log, "exports es_migrate", process)
            assert '"3.0.0"' not in log.read_text()  # never applied
            run_cli("agents", "rollback", "odometer", *where)
            # with es_migrate: every agent migrated as it moves
            run_cli("agents", "rollout", "odometer", "2.0.0", "--stages", "50,100",
                    "--hold", "3", *where)  # fmt: skip
            wait_for("v2 complete",
                     lambda: ("complete", "rollout", "2.0.0") in history(gateway, "odometer"),
                     process)  # fmt: skip
            wait_for("every agent on v2", partial(everyone_on, gateway, "2.0.0"), process)
            wait_for("v2 alone on the edge", partial(runs_only, log, "2.0.0"), process)
            summary = stopped(process)
        finally:
            stop_process(process)
    finally:
        stop_process(gateway.process)
    assert summary["modules"] == {"odometer": {"2.0.0": AGENTS}}
    assert "module odometer not applied" in log.read_text()
    moves = log_records(log, "agent state migrated across a layout change")
    assert sum(record["agents"] for record in moves) == AGENTS  # each agent once
    assert log_records(log, "agent state restored across a layout change") == []

    ticks, count, marker = recorded_counts(tmp_path / "edge-m.act")
    assert np.array_equal(ticks, np.arange(len(ticks)))
    # the step count is continuous through every swap, the migration included
    assert np.array_equal(count, np.broadcast_to(ticks[:, None] + 1, count.shape))
    on_v2 = marker < 0  # v2 writes minus the count es_migrate carried over
    assert on_v2[-1].all()
    assert not on_v2[0].any()
    first = on_v2.argmax(axis=0)  # each agent's first tick on v2 (never back on v1)
    assert np.array_equal(on_v2.sum(axis=0), len(ticks) - first)
    agents = np.arange(count.shape[1])
    carried = -marker[first, agents]
    assert np.array_equal(carried, count[first - 1, agents])  # its last v1 count
    assert np.all(marker[~on_v2] == 1.0)
    assert np.array_equal(-marker[-1], carried)  # the state es_migrate wrote, kept
    assert len(np.unique(first)) >= 2  # the 50 % stage, then the rest
