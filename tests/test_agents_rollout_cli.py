"""``edgeswarm agents rollout|rollback`` as an operator runs them: the fleet's version,
recorded with who changed it, documented exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from edgeswarm.agents_wasm import module_path
from tests.registry_fixtures import run_cli

pytestmark = pytest.mark.integration


def cli_json(*args: str) -> Any:
    return json.loads(run_cli(*args, "--json").stdout)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A gateway data directory holding flocking 1.0.0, 1.1.0 and 1.2.0 (published)."""
    key = tmp_path / "publisher.key"
    public_key = cli_json("keys", "init", "--key", str(key))["public_key"]
    data_dir = tmp_path / "gateway"
    trust = ("agents", "trust", "add", "--public-key", public_key, "--names", "flocking")
    run_cli(*trust, "--data-dir", str(data_dir))
    for version, source in (("1.0.0", "flocking"), ("1.1.0", "boids"), ("1.2.0", "anomaly")):
        wasm = tmp_path / f"{version}.wasm"
        wasm.write_bytes(module_path(source).read_bytes())
        sign = ("agents", "sign", str(wasm), "--name", "flocking", "--version", version)
        run_cli(*sign, "--key", str(key))
        run_cli("agents", "publish", str(wasm), "--data-dir", str(data_dir))
    return data_dir


def test_rollout_deploys_then_stages_and_rollback_records_the_actor(registry: Path) -> None:
    where = ("--data-dir", str(registry))
    deployed = cli_json("agents", "rollout", "flocking", "1.0.0", *where, "--actor", "ann")
    assert (deployed["version"], deployed["to_version"]) == ("1.0.0", None)
    started = cli_json(
        "agents", "rollout", "flocking", "1.1.0", "--stages", "10,50,100", "--hold", "3", *where
    )
    assert (started["version"], started["to_version"], started["rollout"]) == ("1.0.0", "1.1.0", 1)
    busy = run_cli("agents", "rollout", "flocking", "1.2.0", *where, check=False)
    assert busy.returncode == 1  # one rollout per module at a time
    assert busy.stderr.startswith("error: rollout flocking 1.2.0: ")
    assert "under way" in busy.stderr
    back = cli_json("agents", "rollback", "flocking", *where, "--actor", "bob")
    assert (back["version"], back["to_version"]) == ("1.0.0", None)
    history = cli_json("agents", "history", "flocking", *where)
    assert [(h["action"], h["actor"], h["version"]) for h in history[-3:]] == [
        ("deploy", "ann", "1.0.0"),
        ("rollout", history[-2]["actor"], "1.1.0"),
        ("rollback", "bob", "1.1.0"),
    ]
    assert history[-2]["detail"]["stages"] == [[0.1, 3], [0.5, 3], [1.0, 3]]


def test_rollout_share_and_labels_make_a_two_stage_plan(registry: Path) -> None:
    where = ("--data-dir", str(registry))
    run_cli("agents", "rollout", "flocking", "1.0.0", *where)
    cli_json("agents", "rollout", "flocking", "1.1.0", "--share", "0.25", "--labels", "a,b", *where)
    last = cli_json("agents", "history", "flocking", *where)[-1]
    assert last["detail"]["stages"] == [[0.25, 10], [1.0, 10]]
    text = run_cli("agents", "rollout", "flocking", "1.2.0", *where, check=False)
    assert text.returncode == 1


def test_rollout_and_rollback_usage_and_failures_have_their_exit_codes(registry: Path) -> None:
    where = ("--data-dir", str(registry))
    rollout = ("agents", "rollout", "flocking")
    shrinking = run_cli(*rollout, "1.0.0", "--stages", "50,10", *where, check=False)
    assert shrinking.returncode == 2
    assert "grow" in shrinking.stderr
    both = run_cli(*rollout, "1.0.0", "--stages", "50", "--share", "0.1", *where, check=False)
    assert both.returncode == 2
    unknown = run_cli("agents", "rollout", "flocking", "9.9.9", *where, check=False)
    assert unknown.returncode == 1
    nothing = run_cli("agents", "rollback", "flocking", *where, check=False)
    assert nothing.returncode == 1
    assert "not deployed" in nothing.stderr
    actions = {h["action"] for h in cli_json("agents", "history", *where)}
    assert actions == {"trust", "publish"}  # nothing refused changed anything
