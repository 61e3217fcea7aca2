"""The hostile-module suite against a LIVE edge process (tests/test_hostile_modules.py runs
the same attacks in-process): one edge runs ``flocking`` beside every hostile module at
once, one agent group each, and streams to a real gateway; a reference edge runs the same
seed with a do-nothing module in every hostile slot.

The action streams (``--actions-out``) must be identical from tick 0: the healthy
neighbours bit-exact, every hostile group at the safe action (zero) from its first tick,
so each was stopped within one tick. The live edge must keep serving: every observation
acknowledged, exit 0, each hostile module faulted exactly once, with the right kind.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from tests import hostile_modules as hostile
from tests import wasm_fixtures as fixtures

from .conftest import RunningGateway, edgeswarm_command, stop_process

pytestmark = pytest.mark.integration

DEEP_RECURSION = fixtures.policy_wat(
    """(func $down (param $depth i32) (result i32)
         (call $down (i32.add (local.get $depth) (i32.const 1))))
       (func (export "es_step") (param i32 i32 i32 i32) (result i32)
         (call $down (i32.const 0)))""",
    name="recursion",
)
"""Recurses until the Wasm stack is exhausted."""

HOSTILE: dict[str, tuple[bytes, str]] = {
    # file stem: (module, the fault kind the edge must report)
    "spin": (hostile.SPIN, "fuel"),
    "nan": (hostile.NAN_ACTIONS, "nonfinite_action"),
    "flag_storm": (hostile.FLAG_STORM, "fuel"),
    "time_storm": (hostile.TIME_NS_STORM, "fuel"),
    "membomb": (fixtures.MEMORY_BOMB, "memory"),
    "recursion": (DEEP_RECURSION, "trap"),
    "forbidden_import": (fixtures.FORBIDDEN_IMPORT, "load"),
    "wrong_abi": (fixtures.WRONG_ABI, "load"),
    "compile_bomb": (hostile.compile_bomb(), "load"),
    "random_bytes": (b"\0asm\x01\0\0\0" + random.Random(21).randbytes(4096), "load"),
}
DO_NOTHING = fixtures.policy_wat(name="idle")
"""Valid ABI v1; es_step writes no action, so its agents keep the zero action."""

TICKS = 20
DEADLINE_MS = "1000"
"""Each policy call's wall-clock deadline. Derived, it would be 2.3 ms (half of a 20 Hz tick
shared by eleven policies): one preemption of the edge on a loaded 2-core machine passes it,
so a storm of host calls was stopped as ``deadline`` before it ran out of fuel (CI, 1 run in
about 10). Every attack here is stopped by a deterministic limit — fuel, memory, a trap, a
refusal at load — and the deadline fault has its own tests in test_hostile_modules.py."""


def _policy_files(directory: Path, *, reference: bool) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    args = ["--policy", "flocking"]
    for stem, (module, _) in HOSTILE.items():
        binary = not module.startswith(b"(module")
        path = directory / f"{stem}.{'wasm' if binary else 'wat'}"
        if reference:
            path = directory / f"{stem}.wat"
            path.write_bytes(DO_NOTHING)
        else:
            path.write_bytes(module)
        args += ["--policy", str(path)]
    return args


def _edge(gateway: RunningGateway, tmp_path: Path, name: str) -> subprocess.Popen[str]:
    data_dir = tmp_path / name
    policies = _policy_files(tmp_path / f"{name}-modules", reference=name == "reference")
    data_dir.mkdir()
    with (tmp_path / f"{name}.log").open("w") as stderr:
        return subprocess.Popen(
            edgeswarm_command(
                "edge", "--edge-id", name, "--ca", str(gateway.ca),
                "--gateway", f"127.0.0.1:{gateway.port}", "--data-dir", str(data_dir),
                "--join-token", gateway.edge_token(), "--metrics-port", "-1", "--json",
                "--agents", str(110 * len(HOSTILE) + 110), "--ticks", str(TICKS),
                "--tick-hz", "20", "--policy-deadline-ms", DEADLINE_MS,
                "--seed", "7", "--policy-fallback", "zero",
                "--actions-out", str(tmp_path / f"{name}.act"), *policies,
            ),
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip


def test_every_hostile_module_is_stopped_in_its_first_tick_on_a_live_edge_that_keeps_serving(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    live, reference = _edge(gateway, tmp_path, "live"), _edge(gateway, tmp_path, "reference")
    try:
        outputs = {name: p.communicate(timeout=180)[0] for name, p in
                   (("live", live), ("reference", reference))}  # fmt: skip
    finally:
        stop_process(live)
        stop_process(reference)
    log = (tmp_path / "live.log").read_text()
    summary = json.loads(outputs["live"].splitlines()[-1])
    assert summary["event"] == "summary", log[-3000:]
    assert live.returncode == 0, log[-3000:]  # kept serving: everything acknowledged
    assert summary["tick"] == TICKS
    assert summary["observations_acked"] == summary["observations_sent"] == TICKS * 1210
    assert reference.returncode == 0, (tmp_path / "reference.log").read_text()[-3000:]
    faults = summary["policy_faults"]
    expected = {f"{stem}/{kind}": 1 for stem, (_, kind) in HOSTILE.items()}
    assert {k: v for k, v in faults.items() if not k.startswith("flocking")} == expected
    assert summary["policies_quarantined"] == len(HOSTILE)

    compared = subprocess.run(
        edgeswarm_command("replay", str(tmp_path / "reference.act"), str(tmp_path / "live.act"),
                          "--json"),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert json.loads(compared.stdout) == {"identical": True, "ticks": TICKS, "difference": None}
