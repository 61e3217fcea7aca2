"""Replay proof: a recorded run (observation log export + the same module + seed) replays
to identical action digests, and a module changed to act differently from one tick on
is caught at exactly that tick and agent — not before, not later.

tests/test_io_replay.py covers the record/export/replay path with shipped policies
(a different module differs at tick 0); this adds the changed-module case, where the
change is invisible for the first ticks.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.wasm_fixtures import policy_wat

from .conftest import RunningGateway, edgeswarm_command
from .test_integration import run_edge, summary_of

pytestmark = pytest.mark.integration

TICKS = 8
CHANGED_AT = 5


def acts_once_at(call: int) -> bytes:
    """Writes action 0.5 for its first agent on its ``call``-th step (counting from 0),
    nothing otherwise: the same module as the reference until that tick."""
    return policy_wat(
        f"""(func (export "es_step") (param $n i32) (param $obs i32) (param $state i32)
              (param $act i32) (result i32)
              (if (i32.eq (global.get $calls) (i32.const {call}))
                (then (f32.store (local.get $act) (f32.const 0.5))))
              (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
              (i32.const 0))""",
        name="counter",
        extra="(global $calls (mut i32) (i32.const 0))",
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(edgeswarm_command(*args), capture_output=True, text=True, timeout=120)


def test_a_module_changed_from_tick_5_on_is_caught_at_tick_5_on_replay(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    reference, changed = tmp_path / "reference.wat", tmp_path / "changed.wat"
    reference.write_bytes(acts_once_at(-1))  # never
    changed.write_bytes(acts_once_at(CHANGED_AT))
    live, same, other = (tmp_path / f"{n}.act" for n in ("live", "same", "other"))
    recording = tmp_path / "live.rec"
    summary = summary_of(
        run_edge(gateway, "rec", agents=200, ticks=TICKS, batch_agents=100,
                 extra=("--seed", "9", "--policy", str(reference), "--actions-out", str(live)))
    )  # fmt: skip
    assert summary["observations_acked"] == TICKS * 200
    exported = cli("log", "export", "--data-dir", str(gateway.data_dir), "--edge", "rec",
                   "--json", str(recording))  # fmt: skip
    assert exported.returncode == 0, exported.stderr

    for edge_id, module, out in (
        ("replay-same", reference, same),
        ("replay-changed", changed, other),
    ):
        summary_of(
            run_edge(gateway, edge_id, agents=200, ticks=100, batch_agents=100,
                     extra=("--seed", "9", "--policy", str(module), "--io", f"replay:{recording}",
                            "--actions-out", str(out)))
        )  # fmt: skip

    identical = cli("replay", str(live), str(same), "--json")
    assert identical.returncode == 0, identical.stdout + identical.stderr
    assert json.loads(identical.stdout) == {"identical": True, "ticks": TICKS, "difference": None}

    differ = cli("replay", str(live), str(other), "--json")
    assert differ.returncode == 1, differ.stdout + differ.stderr
    difference = json.loads(differ.stdout)["difference"]
    assert (difference["tick"], difference["agent_id"]) == (CHANGED_AT, 0), difference
