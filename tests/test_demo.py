"""The demo a new user runs first: a gateway and edges on loopback, all acknowledged."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import edgeswarm_command

pytestmark = pytest.mark.integration


def test_demo_runs_a_swarm_and_shares_state(tmp_path: Path) -> None:
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        returncode = subprocess.run(
            edgeswarm_command(
                "demo",
                "--duration",
                "2",
                "--edges",
                "2",
                "--agents",
                "2000",
                "--data-dir",
                str(tmp_path / "demo"),
                "--json",
            ),
            stdout=stdout,
            stderr=stderr,
            timeout=120,
            check=False,
        ).returncode
    assert returncode == 0, err.read_text()[-2000:]
    summary = json.loads(out.read_text().strip().splitlines()[-1])
    assert summary["failed"] == []
    assert summary["edges"] == 2
    assert summary["observations_sent"] > 0
    assert summary["observations_acked"] == summary["observations_sent"]
    assert summary["gateway_observations"] == summary["observations_sent"]
    # the anomaly policies (seeded worlds: they always find some) counted into the
    # shared CRDT counter, and it reached the gateway's document
    assert set(summary["swarm_counters"]) == {"swarm/anomalies"}
    assert summary["swarm_counters"]["swarm/anomalies"] > 0
    assert (tmp_path / "demo" / "anomaly.tflite").stat().st_size > 0
    # the live view, written to a file, ends its last line (Rich leaves it open when
    # the output is not a terminal: whatever came next was glued onto it)
    assert err.read_text().endswith("\n")


def test_demo_over_mqtt_closes_the_loop_through_a_real_broker(
    tmp_path: Path, mosquitto: object
) -> None:
    # (the fixture only makes the test skip, saying why, where Mosquitto is absent)
    out = subprocess.run(
        edgeswarm_command(
            *("demo", "--io", "mqtt", "--duration", "3", "--edges", "1", "--agents", "500"),
            *("--data-dir", str(tmp_path / "demo"), "--json"),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["io"] == "mqtt"
    assert summary["failed"] == []
    assert summary["observations_sent"] > 0
    assert summary["observations_acked"] == summary["observations_sent"]
    sensors = [
        json.loads(line)
        for line in (tmp_path / "demo" / "sensors-0.log").read_text().splitlines()
        if line.startswith("{")
    ]
    assert sensors[-1]["ticks"] > 0
    assert sensors[-1]["actions_applied"] > 0  # the edge's actions came back over MQTT


def test_demo_with_placement_drains_an_edge_half_way(tmp_path: Path) -> None:
    result = subprocess.run(
        edgeswarm_command(
            "demo", "--placement", "--duration", "8", "--edges", "3", "--agents", "1000",
            "--data-dir", str(tmp_path / "demo"), "--json",
        ),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["failed"] == []
    assert summary["observations_acked"] == summary["observations_sent"] > 0
    placement = summary["placement"]
    assert placement["error"] is None
    assert placement["drained"] == "edge-1"
    assert placement["moves"] > 0  # edge-1 held agents and gave them away
    assert placement["drained_at_s"] is not None


def test_demo_placement_needs_several_simulated_edges(tmp_path: Path) -> None:
    result = subprocess.run(
        edgeswarm_command("demo", "--placement", "--edges", "1", "--data-dir", str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--placement needs --io sim and at least 2 --edges" in result.stderr
