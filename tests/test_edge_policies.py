"""An edge process's policies: groups, quarantine metrics, retry, user modules, models."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgeswarm.agents_wasm import hostile_names, module_path
from edgeswarm.client.address import GatewayAddress
from edgeswarm.edge import AgentTable
from edgeswarm.edge.config import EdgeConfig
from edgeswarm.edge.policy.loading import assign_groups, resolve_module
from edgeswarm.edge.runner import EdgeRunner
from edgeswarm.transport.quic import default_stack

from .conftest import RunningGateway, edgeswarm_command
from .hostile_modules import DESCRIPTOR_BOMB

pytestmark = pytest.mark.integration


def edge_config(gateway: RunningGateway, tmp_path: Path, **overrides: object) -> EdgeConfig:
    settings: dict[str, object] = {
        "edge_id": "policy-edge",
        "gateway": GatewayAddress(port=gateway.port, ca_file=gateway.ca, stack=default_stack()),
        "data_dir": tmp_path / "edge",
        "join_token": gateway.edge_token(),
        "agents": 1000,
        "ticks": 4,
        "tick_hz": 0,
        "batch_agents": 500,
        "progress_interval_s": 0,
        "metrics_port": None,
        **overrides,
    }
    return EdgeConfig(**settings)  # type: ignore[arg-type]


def fault_count(runner: EdgeRunner, policy: str, kind: str) -> float:
    value = runner.metrics.registry.get_sample_value(
        "edgeswarm_edge_policy_faults_total", {"policy": policy, "kind": kind}
    )
    return value or 0.0


def test_groups_are_equal_and_contiguous() -> None:
    table = AgentTable.create(count=10, obs_dim=1, state_dim=1, act_dim=1)
    assert assign_groups(table, 3) == [4, 3, 3]
    assert table.policy.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_unknown_policy_names_the_built_ins(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="boids"):
        resolve_module("no-such-policy")
    for fixture in hostile_names():  # shipped beside the examples, never offered by name
        with pytest.raises(FileNotFoundError) as refused:
            resolve_module(fixture)
        assert "hostile" not in str(refused.value).split("built-in module")[1]
    user = tmp_path / "mine.wasm"
    user.write_bytes(module_path("boids").read_bytes())
    assert resolve_module(str(user)) == user


async def test_hostile_policy_is_quarantined_and_counted_healthy_one_keeps_running(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    runner = EdgeRunner(
        edge_config(gateway, tmp_path, policies=("boids", str(module_path("hostile_loop"))))
    )
    summary = await runner.run()
    assert summary["observations_acked"] == summary["observations_sent"] == 4000
    assert summary["policies_quarantined"] == 1
    assert summary["policy_faults"] == {"hostile_loop/fuel": 1}
    assert fault_count(runner, "hostile_loop", "fuel") == 1
    healthy, hostile = runner.table.actions[:500], runner.table.actions[500:]
    assert np.abs(healthy).sum() > 0  # boids keeps steering its agents
    assert not hostile.any()  # the safe action: zero


async def test_fuel_budget_comes_from_the_configuration(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    # 2 000 000 + 1 per agent is less than boids needs (~50 per agent) for 50 000 agents
    starved = EdgeRunner(
        edge_config(
            gateway, tmp_path, policy_fuel_per_agent=1, agents=50_000, batch_agents=5000, ticks=1
        )
    )
    summary = await starved.run()
    assert summary["policy_faults"] == {"boids/fuel": 1}
    assert summary["observations_acked"] == 50_000  # the edge still reports every agent


async def test_quarantined_policy_is_retried_when_asked(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    runner = EdgeRunner(
        edge_config(
            gateway,
            tmp_path,
            policies=(str(module_path("hostile_trap")), "boids"),
            policy_retry_s=0.0,
        )
    )
    summary = await runner.run()
    # retried before every tick after the first fault, failing again each time
    assert summary["policy_faults"] == {"hostile_trap/trap": 4}
    assert runner.metrics.registry.get_sample_value("edgeswarm_edge_policies_reenabled_total") == 3
    assert summary["observations_acked"] == 4000


async def test_user_module_and_model_from_files(gateway: RunningGateway, tmp_path: Path) -> None:
    from edgeswarm.models.anomaly import write_anomaly_model

    model = tmp_path / "anomaly.tflite"
    write_anomaly_model(model)
    policy = tmp_path / "my_boids.wasm"
    policy.write_bytes(module_path("boids").read_bytes())
    runner = EdgeRunner(
        edge_config(gateway, tmp_path, policies=(str(policy), "anomaly"), models=(model,), ticks=2)
    )
    summary = await runner.run()
    assert summary["policy_faults"] == {}  # the anomaly policy found its model
    assert summary["observations_acked"] == 2000
    assert list((tmp_path / "edge" / "modules").iterdir())  # compiled once, kept on disk


def test_step_deadline_is_half_the_tick_period_shared_by_the_policies(tmp_path: Path) -> None:
    def deadline(**settings: object) -> float:
        config = EdgeConfig(
            edge_id="e",
            gateway=GatewayAddress(host="127.0.0.1", port=4433, ca_file=tmp_path / "ca.pem"),
            **settings,  # type: ignore[arg-type]
        )
        return config.policy_deadline_s

    assert deadline(tick_hz=10.0, policies=("boids", "anomaly")) == pytest.approx(0.025)
    assert deadline(tick_hz=10.0, policies=("boids",)) == pytest.approx(0.05)
    assert deadline(tick_hz=0.0, policies=("boids",)) == pytest.approx(0.05)
    assert deadline(tick_hz=10.0, policy_deadline_ms=7.0) == pytest.approx(0.007)


def test_edge_command_survives_a_module_that_breaks_loading(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    # issue 12: this descriptor made json.loads raise RecursionError and the edge exit 1
    bad = tmp_path / "bad.wat"
    bad.write_bytes(DESCRIPTOR_BOMB)
    result = subprocess.run(
        edgeswarm_command(
            "edge",
            "--edge-id",
            "cli-edge",
            "--ca",
            str(gateway.ca),
            "--gateway",
            f"127.0.0.1:{gateway.port}",
            "--join-token",
            gateway.edge_token(),
            "--data-dir",
            str(tmp_path / "edge"),
            "--agents",
            "1000",
            "--ticks",
            "3",
            "--tick-hz",
            "0",
            "--metrics-port",
            "0",
            "--progress-interval",
            "0",
            "--policy",
            "flocking",
            "--policy",
            str(bad),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["policy_faults"] == {"bad/load": 1}
    assert summary["observations_acked"] == 3000
