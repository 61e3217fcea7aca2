"""The heavy lane on the edge: the ABI imports, the escalate policy, the edge's lane."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edgeswarm.agents_wasm import module_path
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.heavy_lane import HeavyRequests
from edgeswarm.edge.policy.reference import escalate_numpy
from edgeswarm.edge.policy.wasm_host import WasmPolicy
from edgeswarm.models import ModelRegistry, write_anomaly_model
from edgeswarm.wire import Actions, InferStatus

from .test_agents_guest import bits, world_observations

Results = tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float32]]


class ScriptedLane:
    """An in-memory heavy lane: records requests, serves the results a test scripts."""

    def __init__(self) -> None:
        self.requests: list[tuple[int, str, NDArray[np.int32], NDArray[np.float32]]] = []
        self.pending: dict[str, Results] = {}

    def request(
        self, slot: int, model: str, agents: NDArray[np.int32], rows: NDArray[np.float32]
    ) -> int:
        self.requests.append((slot, model, agents.copy(), rows.copy()))
        return int(agents.shape[0])

    def results(self, slot: int, model: str, cap: int, out_dim: int) -> Results:
        empty: Results = (
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            np.zeros((0, out_dim), np.float32),
        )
        agents, statuses, outputs = self.pending.pop(model, empty)
        return agents[:cap], statuses[:cap], outputs[:cap]


@pytest.fixture
def models() -> ModelRegistry:
    registry = ModelRegistry()
    registry.register_bytes("anomaly", write_anomaly_model())
    return registry


def test_escalate_asks_for_its_suspects_and_reads_verdicts_bit_for_bit(
    models: ModelRegistry,
) -> None:
    lane = ScriptedLane()
    n = 600
    policy = WasmPolicy(module_path("escalate"), models=models, heavy=lane, slot=3)
    state = np.zeros((n, 2), np.float32)
    ref_state = state.copy()
    actions, ref_actions = np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32)
    rng = np.random.default_rng(5)
    asked_total = 0
    for tick, obs in enumerate(world_observations(n, 25, seed=11)):
        obs = obs * np.float32(3.0)  # a restless world: suspects every tick
        if lane.requests:  # answer last tick's request: a mix of verdicts and timeouts
            _, _, agents, _ = lane.requests[-1]
            statuses = rng.choice([0, 0, 0, 1, 2], agents.shape[0]).astype(np.int32)
            verdicts = rng.random((agents.shape[0], 2)).astype(np.float32)
            lane.pending["triage"] = (agents, statuses, verdicts)
        script = lane.pending.get("triage")
        before = len(lane.requests)
        policy.step(obs, state, actions)
        empty: Results = (
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            np.zeros((0, 2), np.float32),
        )
        scores = models.predict("anomaly", obs)  # the same light model the policy calls
        mask, _ = escalate_numpy(scores, script or empty, ref_state, ref_actions)
        np.testing.assert_array_equal(bits(actions), bits(ref_actions))
        np.testing.assert_array_equal(bits(state), bits(ref_state))
        if mask.any():
            slot, model, agents, rows = lane.requests[-1]
            assert (slot, model) == (3, "triage")
            np.testing.assert_array_equal(agents, np.flatnonzero(mask))
            np.testing.assert_array_equal(rows, obs[mask])
            asked_total += agents.shape[0]
        else:
            assert len(lane.requests) == before, f"tick {tick}"
    assert asked_total > 16  # it escalated, in several ticks
    assert (state[:, 1] == 1.0).any()  # some verdicts confirmed


def test_escalate_without_a_lane_asks_nothing_and_keeps_nothing_pending(
    models: ModelRegistry,
) -> None:
    policy = WasmPolicy(module_path("escalate"), models=models)
    obs = world_observations(200, 3, seed=3)[-1] * np.float32(3.0)
    state, actions = np.zeros((200, 2), np.float32), np.zeros((200, 2), np.float32)
    policy.step(obs, state, actions)
    assert not (state[:, 1] == 0.5).any()


# --- the edge's lane ---------------------------------------------------------------


def table(n: int = 10) -> AgentTable:
    t = AgentTable.create(count=n, obs_dim=8, state_dim=2, act_dim=2, first_id=100)
    t.policy[:] = np.repeat(np.arange(2, dtype=np.uint16), n // 2)
    return t


def result(
    request_id: int, agent_ids: NDArray[np.uint32], status: int = 0, width: int = 2
) -> Actions:
    ok = status == InferStatus.OK
    return Actions(
        tick=0,
        agent_ids=agent_ids if ok else np.zeros(0, np.uint32),
        actions=np.full((agent_ids.shape[0], width), 7.0, np.float32)
        if ok
        else np.zeros((0, 1), np.float32),
        request_id=request_id,
        status=status,
    )


class FakeClient:
    """What HeavyRequests uses of a GatewayClient: a READY heavy session."""

    def __init__(self, window: int = 8) -> None:
        from edgeswarm.wire import FEATURE_HEAVY

        self.sent: list[Any] = []
        self.closed_reason = None
        self.welcome = type("W", (), {"infer_window": window})()
        self.session = type("S", (), {"features": frozenset({FEATURE_HEAVY})})()

    def send_infer(self, frame: object) -> None:
        self.sent.append(frame)


def test_requests_go_out_with_agent_ids_and_results_come_back_by_policy() -> None:
    lane, client, t = HeavyRequests(deadline_ms=50), FakeClient(), table()
    lane.request(1, "triage", np.array([0, 3], np.int32), np.ones((2, 8), np.float32))
    lane.send(client, t, 4, now=0.0)  # type: ignore[arg-type]
    [frame] = client.sent
    np.testing.assert_array_equal(frame.agent_ids, [105, 108])  # slot 1 starts at row 5
    assert (frame.deadline_ms, frame.tick) == (50, 4)
    lane.receive(deque([(0.01, result(frame.request_id, frame.agent_ids))]), now=0.01)
    agents, statuses, outputs = lane.results(1, "triage", 10, 2)
    np.testing.assert_array_equal(agents, [0, 3])
    np.testing.assert_array_equal(statuses, [0, 0])
    assert outputs.tolist() == [[7.0, 7.0], [7.0, 7.0]]
    assert lane.results(1, "triage", 10, 2)[0].shape == (0,)
    assert lane.outstanding == 0


def test_no_result_by_deadline_plus_grace_is_a_timeout_and_a_late_one_is_dropped() -> None:
    lane, client, t = HeavyRequests(deadline_ms=50, grace_s=0.025), FakeClient(), table()
    lane.request(0, "triage", np.array([2], np.int32), np.ones((1, 8), np.float32))
    lane.send(client, t, 0, now=0.0)  # type: ignore[arg-type]
    lane.receive(deque(), now=0.074)
    assert lane.results(0, "triage", 4, 2)[0].shape == (0,)
    lane.receive(deque(), now=0.0751)
    agents, statuses, _ = lane.results(0, "triage", 4, 2)
    assert (agents.tolist(), statuses.tolist()) == ([2], [InferStatus.TIMEOUT])
    [frame] = client.sent
    lane.receive(deque([(0.01, result(frame.request_id, frame.agent_ids))]), now=0.2)
    assert lane.results(0, "triage", 4, 2)[0].shape == (0,)
    assert (lane.counters.expired_locally, lane.counters.late_results) == (1, 1)


def test_without_a_heavy_session_or_room_requests_are_rejected_at_once() -> None:
    lane, t = HeavyRequests(), table()
    lane.request(0, "triage", np.array([1], np.int32), np.ones((1, 8), np.float32))
    lane.send(None, t, 0, now=0.0)
    client = FakeClient(window=1)
    for _ in range(2):
        lane.request(0, "triage", np.array([4], np.int32), np.ones((1, 8), np.float32))
        lane.send(client, t, 0, now=0.0)  # type: ignore[arg-type]
    assert len(client.sent) == 1  # the second passed the window
    _, statuses, _ = lane.results(0, "triage", 10, 2)
    assert statuses.tolist() == [InferStatus.REJECTED, InferStatus.REJECTED]


def test_a_result_of_the_wrong_width_or_agents_is_a_failure() -> None:
    lane, client, t = HeavyRequests(), FakeClient(), table()
    for _ in range(2):
        lane.request(0, "triage", np.array([0, 1], np.int32), np.ones((2, 8), np.float32))
        lane.send(client, t, 0, now=0.0)  # type: ignore[arg-type]
    first, second = client.sent
    lane.receive(deque([(0.01, result(first.request_id, first.agent_ids, width=3))]), now=0.01)
    lane.receive(deque([(0.01, result(second.request_id, second.agent_ids[::-1]))]), now=0.01)
    _, statuses, _ = lane.results(0, "triage", 10, 2)
    assert statuses.tolist() == [InferStatus.FAILED] * 4


async def test_an_actions_datagram_wakes_whoever_waits_on_the_client() -> None:
    """Regression: results (and plain actions) that came as datagrams woke nobody."""
    from edgeswarm.client.session import GatewayClient
    from edgeswarm.identity import KeyPair
    from edgeswarm.wire import PROTOCOL_VERSION, Hello, Role, encode_payload

    key = KeyPair.generate()
    hello = Hello(version=PROTOCOL_VERSION, role=Role.EDGE, peer_id="e", public_key=key.public_key)
    client = GatewayClient(hello, key)
    waiter = asyncio.ensure_future(client.wait_change())
    await asyncio.sleep(0)
    plain = Actions(tick=1, agent_ids=np.zeros(1, np.uint32), actions=np.zeros((1, 2), np.float32))
    client.datagram_received(encode_payload(plain))
    await asyncio.wait_for(waiter, 2.0)
    assert len(client.actions) == 1
