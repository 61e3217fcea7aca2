"""A recorded run replays to identical actions: edge -> gateway log -> export -> replay."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import RunningGateway, edgeswarm_command
from .test_integration import run_edge, summary_of

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(edgeswarm_command(*args), capture_output=True, text=True, timeout=120)


def test_a_recorded_run_replays_to_identical_action_digests(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    live, replayed, other = (tmp_path / f"{n}.act" for n in ("live", "replayed", "other"))
    recording = tmp_path / "live.rec"
    common = ("--seed", "5", "--policy", "boids", "--policy", "flocking")
    summary = summary_of(
        run_edge(gateway, "rec", agents=300, ticks=6, batch_agents=128,
                 extra=(*common, "--actions-out", str(live)))
    )  # fmt: skip
    assert summary["observations_acked"] == 1800

    exported = cli("log", "export", "--data-dir", str(gateway.data_dir), "--edge", "rec",
                   "--json", str(recording))  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    report = json.loads(exported.stdout)
    assert (report["ticks"], report["observations"], report["batches"]) == (6, 1800, 18)

    for edge_id, out, policies in (
        ("replay", replayed, common),
        ("replay-other", other, ("--seed", "5", "--policy", "boids", "--policy", "mlp_controller")),
    ):
        summary_of(
            run_edge(gateway, edge_id, agents=300, ticks=100, batch_agents=128,
                     extra=(*policies, "--io", f"replay:{recording}", "--actions-out", str(out)))
        )  # fmt: skip

    same = cli("replay", str(live), str(replayed), "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert json.loads(same.stdout) == {"identical": True, "ticks": 6, "difference": None}

    differ = cli("replay", str(live), str(other))
    assert differ.returncode == 1
    assert differ.stdout.startswith("differ at tick 0, agent 150 (after 0 identical ticks)")


def test_export_and_replay_say_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    missing = cli("log", "export", "--data-dir", str(tmp_path), "--edge", "e", str(tmp_path / "x"))
    assert missing.returncode == 2
    assert "no observation log here" in missing.stderr
    junk = tmp_path / "junk.act"
    junk.write_bytes(b"not a recording")
    bad = cli("replay", str(junk), str(junk))
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "not an edgeswarm recording" in bad.stderr
