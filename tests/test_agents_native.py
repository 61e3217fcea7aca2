"""The native build of a shipped C policy (the benchmark's ceiling) is the same policy."""

from __future__ import annotations

import numpy as np
import pytest

from edgeswarm.agents_wasm import build, module_path
from edgeswarm.agents_wasm.native import build_native, load_step
from edgeswarm.edge import AgentTable, FlockingWorld
from edgeswarm.edge.policy import WasmPolicy
from edgeswarm.edge.policy.boids import boids_numpy

pytestmark = pytest.mark.skipif(
    build.ziglang_problem() is not None,
    reason=f"cannot build C policies here: {build.ziglang_problem()}",
)


def test_native_flocking_is_bit_exact_with_wasm_and_numpy(tmp_path):
    step = load_step(build_native("flocking", tmp_path))
    assert build_native("flocking", tmp_path) == build_native("flocking", tmp_path)  # cached
    count = 1001  # odd: the last agent goes through the half-vector path
    world = FlockingWorld(count, seed=9)
    table = AgentTable.create(count=count, obs_dim=8, state_dim=2, act_dim=2)
    native_state = np.zeros((count, 2), np.float32)
    native_actions = np.zeros((count, 2), np.float32)
    ref_state = np.zeros((count, 2), np.float32)
    ref_actions = np.zeros((count, 2), np.float32)
    with WasmPolicy(module_path("flocking")) as policy:
        for _ in range(20):
            world.sense(table)
            obs = table.observations
            status = step(
                count, obs.ctypes.data, native_state.ctypes.data, native_actions.ctypes.data
            )
            assert status == 0
            policy.step(obs, table.state, table.actions)
            boids_numpy(obs, ref_state, ref_actions)
            for got in (native_actions, table.actions):
                assert np.array_equal(got.view(np.uint32), ref_actions.view(np.uint32))
            assert np.array_equal(native_state.view(np.uint32), ref_state.view(np.uint32))
            world.apply(ref_actions)
