"""``edgeswarm edge`` as an operator runs it: one process per data directory, permanent
refusals end it (status 3), jitter that no seed shares, honest exit status after a
carried-over spool, join tokens off the command line, policies checked at start, and a
live view on a terminal. Real gateway and edge processes on loopback."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.agents_wasm import module_path
from edgeswarm.client.address import GatewayAddress
from edgeswarm.edge.config import EdgeConfig
from edgeswarm.edge.runner import EdgeRunner
from edgeswarm.identity import load_or_create_key

from .conftest import RunningGateway, edgeswarm_command, start_gateway, stop_process
from .operator import cli, error_line

pytestmark = pytest.mark.integration


def edge_args(gateway: RunningGateway, data_dir: Path, *extra: str) -> list[str]:
    return [
        *("edge", "--edge-id", "edge-o", "--ca", str(gateway.ca)),
        *("--gateway", f"127.0.0.1:{gateway.port}", "--data-dir", str(data_dir)),
        *("--agents", "200", "--batch-agents", "100", "--metrics-port", "-1"),
        *("--progress-interval", "0"),
        *extra,
    ]


def start_edge(
    gateway: RunningGateway, data_dir: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir.parent / f"{data_dir.name}.log").open("w") as log:  # beside, not inside
        return subprocess.Popen(
            edgeswarm_command(*edge_args(gateway, data_dir, *extra)),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **(env or {})},
        )


def summary_of(process: subprocess.Popen[str], timeout: float = 120) -> dict[str, Any]:
    stdout, _ = process.communicate(timeout=timeout)
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert lines, "no summary"
    summary: dict[str, Any] = lines[-1]
    assert summary["event"] == "summary"
    return summary


def wait_logged(path: Path, text: str, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text():
        assert process.poll() is None, path.read_text()[-3000:]
        assert time.monotonic() < deadline, f"never logged {text!r}"
        time.sleep(0.05)


def test_a_second_edge_on_one_data_dir_is_refused_and_the_first_keeps_running(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    first = start_edge(
        gateway, tmp_path / "edge", "--duration", "300", "--tick-hz", "20",
        env={"EDGESWARM_JOIN_TOKEN": gateway.edge_token()},
    )  # fmt: skip
    try:
        wait_logged(tmp_path / "edge.log", "connected to gateway", first)
        second = cli(*edge_args(gateway, tmp_path / "edge", "--ticks", "5"), timeout=60)
        assert second.returncode == 1
        line = error_line(second)
        assert f"data directory {tmp_path / 'edge'} is in use by another process" in line
        assert f"pid {first.pid}" in line
        assert first.poll() is None  # still running: the second took nothing from it
        first.send_signal(signal.SIGTERM)
        summary = summary_of(first)
        assert first.returncode == 0, (tmp_path / "edge.log").read_text()[-3000:]
        assert summary["batches_acked"] == summary["batches_sent"] > 0
    finally:
        stop_process(first)


@pytest.mark.parametrize(
    ("token", "code", "hint"),
    [("es1.nope.nope", "BAD_TOKEN", "keys issue"), (None, "UNKNOWN_PEER", "keys add")],
)
def test_a_permanent_refusal_stops_the_edge_with_status_3(
    gateway: RunningGateway, tmp_path: Path, token: str | None, code: str, hint: str
) -> None:
    env = {"EDGESWARM_JOIN_TOKEN": token} if token else {}
    started = time.monotonic()
    result = cli(*edge_args(gateway, tmp_path / "edge", "--duration", "60"), env=env, timeout=90)
    assert result.returncode == 3
    assert time.monotonic() - started < 30  # not its 60 s of retrying and spooling
    line = error_line(result)
    assert code in line
    assert hint in line  # what to do
    assert "unreachable" not in result.stderr  # a refusal is not an outage
    with sqlite3.connect(tmp_path / "edge" / "spool.db") as spool:
        (held,) = spool.execute("SELECT count(*) FROM spool").fetchone()
    assert held < 200  # a few ticks' worth, not a spool filling up for nobody


def runner_config(tmp_path: Path, name: str) -> EdgeConfig:
    ca = tmp_path / "ca.crt"
    ca.write_text("")
    return EdgeConfig(
        edge_id=name,
        gateway=GatewayAddress(ca_file=ca),
        data_dir=tmp_path / name,
        agents=10,
        metrics_port=None,
        seed=0,  # the default: every edge of a fleet may share it
    )


def test_edges_that_share_a_seed_retry_after_different_delays(tmp_path: Path) -> None:
    first = EdgeRunner(runner_config(tmp_path, "a"))
    second = EdgeRunner(runner_config(tmp_path, "b"))
    delays = [[runner.uplink.reconnect.failed() for _ in range(6)] for runner in (first, second)]
    assert delays[0] != delays[1]  # no thundering herd on a restarted gateway
    for runner in (first, second):
        runner.spool.close()
        runner.state.close()


def test_a_start_that_delivers_a_carried_over_spool_exits_0(tmp_path: Path) -> None:
    gateway = start_gateway(tmp_path / "gw")
    port = gateway.port
    (tmp_path / "edge").mkdir()
    gateway.enroll(load_or_create_key(tmp_path / "edge" / "edge.key"), "edge-o")
    stop_process(gateway.process)  # down for the edge's whole first run
    first = start_edge(
        gateway, tmp_path / "edge", "--ticks", "3", "--tick-hz", "0", "--drain-timeout", "0.5"
    )
    summary = summary_of(first)
    assert first.returncode == 1  # unacknowledged: they stay spooled
    assert summary["in_flight"] == 6
    restarted = start_gateway(tmp_path / "gw", port=port)
    try:
        second = start_edge(restarted, tmp_path / "edge", "--ticks", "2", "--tick-hz", "0")
        summary = summary_of(second)
        assert summary["in_flight"] == 0  # everything delivered, the carried-over too
        assert second.returncode == 0, (tmp_path / "edge.log").read_text()[-3000:]
        assert (summary["batches_carried_over"], summary["observations_carried_over"]) == (6, 600)
        assert (summary["batches_sent"], summary["batches_acked"]) == (4, 6 + 4)
    finally:
        stop_process(restarted.process)


def test_the_join_token_comes_from_a_file_or_the_environment(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(gateway.edge_token() + "\n")
    by_file = start_edge(
        gateway, tmp_path / "a", "--ticks", "2", "--join-token-file", str(token_file)
    )
    by_env = start_edge(
        gateway, tmp_path / "b", "--ticks", "2", "--edge-id", "edge-env",
        env={"EDGESWARM_JOIN_TOKEN": gateway.edge_token()},
    )  # fmt: skip
    for process in (by_file, by_env):
        summary = summary_of(process)
        assert process.returncode == 0
        assert summary["batches_acked"] == 4
        assert isinstance(process.args, list)
        assert not any(str(arg).startswith("es1.") for arg in process.args)  # never on argv
    both = cli(
        *edge_args(gateway, tmp_path / "c", "--join-token-file", str(token_file)),
        env={"EDGESWARM_JOIN_TOKEN": "es1.x.y"},
    )
    assert both.returncode == 2
    assert "not both" in error_line(both)


def test_policies_are_checked_before_the_start(gateway: RunningGateway, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wat"
    broken.write_text('(module\n  (func (export "es_step") (i32.add)\n')
    result = cli(*edge_args(gateway, tmp_path / "edge", "--policy", str(broken)), timeout=60)
    assert result.returncode == 2
    line = error_line(result)
    assert f"--policy {broken}" in line
    assert "line 3" in line  # where the text is wrong
    hostile = cli(*edge_args(gateway, tmp_path / "edge", "--policy", "hostile_loop"))
    assert hostile.returncode == 2
    line = error_line(hostile)
    assert (
        "not a built-in module (anomaly, boids, escalate, flocking, mlp_controller, "
        "odometer_v1, odometer_v2)" in line
    )
    by_path = str(module_path("hostile_trap"))  # a test fixture stays loadable by its path
    loaded = cli(
        *edge_args(gateway, tmp_path / "edge", "--policy", by_path, "--ticks", "1"),
        env={"EDGESWARM_JOIN_TOKEN": gateway.edge_token()},
    )
    assert loaded.returncode in (0, 1), loaded.stderr[-3000:]  # ran (and maybe quarantined it)


def test_a_wrong_ca_path_is_named_at_once(gateway: RunningGateway, tmp_path: Path) -> None:
    started = time.monotonic()
    result = cli(*edge_args(gateway, tmp_path / "edge"), "--ca", str(tmp_path / "nope.crt"))
    assert result.returncode == 2
    assert f"--ca: no file {tmp_path / 'nope.crt'}" in error_line(result)
    assert time.monotonic() - started < 20  # no connect timeout, no retry loop


def test_the_edge_draws_a_live_table_on_a_terminal(gateway: RunningGateway, tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    log = (tmp_path / "edge.log").open("w")
    process = subprocess.Popen(
        edgeswarm_command(
            *edge_args(gateway, tmp_path / "edge", "--ticks", "30", "--tick-hz", "20"),
            "--progress-interval",
            "0.2",
        ),
        stdout=terminal,
        stderr=log,
        text=True,  # no pipe of ours: only the type of the Popen
        env={**os.environ, "EDGESWARM_JOIN_TOKEN": gateway.edge_token(), "COLUMNS": "100"},
    )
    os.close(terminal)
    shown = bytearray()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the edge exited
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        process.wait(timeout=30)
    finally:
        os.close(controller)
        log.close()
        stop_process(process)
    text = shown.decode(errors="replace")
    assert process.returncode == 0, (tmp_path / "edge.log").read_text()[-3000:]
    assert "observations acked" in text
    assert "stopped" in text  # the summary, as a table
    assert '{"event"' not in text  # no JSON lines on a terminal
