"""Suite "edge": the boids policy five ways, agent memory, and policy cold start.

Cases (the policy ones all run the same boids policy on the same observations,
taken from a :class:`~edgeswarm.edge.world.FlockingWorld` of 10 000 agents):

- ``wasm`` (``steps_per_s``): one :class:`~edgeswarm.edge.policy.wasm_host.WasmPolicy`
  ``step`` per tick of the shipped C module ``flocking`` (ABI v1, SIMD128), under
  fuel, on an engine without epoch checks and without the action check
- ``wasm_guarded`` (``steps_per_s``): the same with everything the edge runs it
  with: the epoch deadline (50 ms, the edge's default for one policy at 10 Hz, its
  ticker thread running) and the action check (target: >= 0.9x ``wasm``)
- ``native`` (``steps_per_s``): ``flocking.c`` compiled for this CPU by the same
  ``zig cc`` (``-O2``, :mod:`edgeswarm.agents_wasm.native`) as a shared library,
  one ctypes call of ``es_step`` per tick on the table's own arrays (the ceiling;
  goal: ``wasm`` >= 0.7x)
- ``numpy`` (``steps_per_s``): :func:`~edgeswarm.edge.policy.boids.boids_numpy`
- ``actor`` (``steps_per_s``): one :class:`~edgeswarm.edge.policy.boids.BoidActor`
  per agent

``wasm``, ``wasm_guarded`` and ``native`` are measured interleaved (rounds of
:data:`ROUND_SECONDS` each in turn, median per case), so that their ratios hold
even on a machine other processes load.
- ``agent_table`` (``bytes_per_agent``): bytes of the
  :class:`~edgeswarm.edge.agent_table.AgentTable` columns plus the world's
  per-agent arrays, at 1 000 000 agents, divided by 1 000 000
- ``module_cache`` (``cold_start_ms``): median time from a fresh
  :class:`~edgeswarm.edge.policy.module_cache.ModuleCache` (process engine already
  made) over a warm on-disk cache to a policy ready to step 10 000 agents:
  verify and deserialize the artifact, instantiate, describe, ``es_init``,
  allocate the blocks
- ``module_compile`` (``cold_start_ms``): the same without an on-disk cache,
  so the module is compiled from its bytes (in the compile worker process)
- ``uplink_send`` (``us_per_batch``): the uplink's send of a batch read from
  the spool (``BATCH_AGENTS`` observations, 82 KB), from its payload to the
  bytes the QUIC link is handed: the session sends the payload as spooled
  (the spool reads themselves are the same in both cases and not timed)
- ``uplink_send_reencoded`` (``us_per_batch``): the same, with each payload
  decoded and encoded again on the way, as the uplink did before it sent
  spooled bytes as they are (a baseline, like ``actor``)
- ``action_check`` and ``action_check_bounded`` (``us_per_step``): the host's check
  of one step's actions (:class:`~edgeswarm.edge.policy.actions.ActionCheck`,
  ``AGENTS`` x 2 float32), without declared bounds (finite) and with per-column
  ``act_bounds``

Targets (issue "Wasm agent runtime"): wasm >= 0.3x numpy and >= 50x actor,
<= 200 B/agent, cache cold start <= 2 ms; (issue "Sandbox that holds")
wasm_guarded >= 0.9x wasm, wasm >= 0.7x native (a goal).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgeswarm.agents_wasm import module_path
from edgeswarm.agents_wasm.native import build_native, load_step
from edgeswarm.bench import BenchResult
from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.policy.actions import ActionCheck
from edgeswarm.edge.policy.boids import BoidActor, boids_numpy, run_actors
from edgeswarm.edge.policy.engine import EngineSettings
from edgeswarm.edge.policy.module_cache import ModuleCache, shared_engine
from edgeswarm.edge.policy.wasm_host import WasmPolicy
from edgeswarm.edge.spool import Spool
from edgeswarm.edge.world import ACTION_DIM, OBSERVATION_DIM, FlockingWorld
from edgeswarm.wire import (
    DEFAULT_MAX_FRAME_BYTES,
    PROTOCOL_VERSION,
    Auth,
    Challenge,
    FrameType,
    Hello,
    ObservationBatch,
    Role,
    Session,
    SessionConfig,
    Welcome,
    decode_payload,
    encode_payload,
)

AGENTS = 10_000
TABLE_AGENTS = 1_000_000
CASE_SECONDS = 1.5
WARMUP_SECONDS = 0.2
ROUND_SECONDS = 0.25
"""Length of one round of the interleaved cases (each gets CASE_SECONDS * 2 in all)."""
COLD_START_REPEATS = 25
BATCH_AGENTS = 2048
"""Agents per OBS_BATCH (the edge's default ``batch_agents``)."""
SEND_BATCHES = 400
ACTION_CHECKS = 200
"""Checks per round of the action-check cases."""
ACTION_CHECK_ROUNDS = 25
"""Rounds of the action-check cases (their median is reported)."""
GUARDED_DEADLINE_S = 0.05
"""The edge's default step deadline for one policy at 10 Hz (half the tick)."""


def _rate(
    step: Callable[[], None], agents: int, seconds: float, *, warmup: float = WARMUP_SECONDS
) -> float:
    """Agent-steps per second of ``step`` over about ``seconds`` after a warm-up."""
    deadline = time.perf_counter() + warmup
    while time.perf_counter() < deadline:
        step()
    ticks = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        step()
        ticks += 1
        now = time.perf_counter()
    return agents * ticks / (now - start)


def _interleaved_rates(
    steps: dict[str, Callable[[], None]], agents: int, seconds: float
) -> dict[str, float]:
    """Agent-steps per second of each step, measured in alternating rounds (median per step)."""
    for step in steps.values():
        _rate(step, agents, ROUND_SECONDS)  # warm every case first
    rounds = max(1, round(2 * seconds / ROUND_SECONDS))
    samples: dict[str, list[float]] = {case: [] for case in steps}
    for _ in range(rounds):
        for case, step in steps.items():
            samples[case].append(_rate(step, agents, ROUND_SECONDS, warmup=0.0))
    return {case: statistics.median(rates) for case, rates in samples.items()}


def _observed_table(agents: int) -> AgentTable:
    world = FlockingWorld(count=agents, seed=7)
    table = AgentTable.create(
        count=agents, obs_dim=OBSERVATION_DIM, state_dim=2, act_dim=ACTION_DIM
    )
    actions = np.zeros((agents, ACTION_DIM), dtype=np.float32)
    state = np.zeros((agents, 2), dtype=np.float32)
    for _ in range(10):  # let the flock settle a little
        world.sense(table)
        boids_numpy(table.observations, state, actions)
        world.apply(actions, 0.1)
    world.sense(table)
    return table


def bytes_per_agent(agents: int = TABLE_AGENTS) -> float:
    """Agent table plus world per-agent arrays, in bytes per agent."""
    table = AgentTable.create(
        count=agents, obs_dim=OBSERVATION_DIM, state_dim=2, act_dim=ACTION_DIM
    )
    world = FlockingWorld(count=agents, seed=1)
    per_agent = [
        value
        for value in vars(world).values()
        if isinstance(value, np.ndarray) and value.ndim and value.shape[0] == agents
    ]
    return (table.nbytes + sum(array.nbytes for array in per_agent)) / agents


def cold_start_ms(cache_dir: Path | None, *, agents: int = AGENTS) -> float:
    """Median ms from a fresh ModuleCache to a boids policy ready to step ``agents``."""
    path = module_path("boids")
    shared_engine()
    if cache_dir is not None:
        ModuleCache(cache_dir=cache_dir).load(path.read_bytes())  # warm the disk entry
    samples = []
    for _ in range(COLD_START_REPEATS):
        start = time.perf_counter()
        cache = ModuleCache(cache_dir=cache_dir)
        policy = WasmPolicy(path, cache=cache)
        policy.reserve(agents)
        samples.append(time.perf_counter() - start)
        policy.close()
    return statistics.median(samples) * 1e3


def _ready_client(credit: int) -> Session:
    """A client session past its handshake (sans-I/O, against a server session)."""
    client = Session(SessionConfig(is_client=True), now=0.0)
    server = Session(SessionConfig(is_client=False), now=0.0)

    def exchange() -> None:
        server.receive_data(client.data_to_send(), 0.0)
        client.receive_data(server.data_to_send(), 0.0)

    client.hello(
        Hello(version=PROTOCOL_VERSION, role=Role.EDGE, peer_id="bench", public_key=bytes(32))
    )
    exchange()
    server.challenge(Challenge(nonce=bytes(32), gateway_id="bench-gw"))
    exchange()
    client.authenticate(Auth(signature=bytes(64)))
    exchange()
    server.accept(
        Welcome(
            version=PROTOCOL_VERSION,
            session_id="s",
            gateway_id="bench-gw",
            max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
            max_batch_agents=BATCH_AGENTS,
            credit=credit,
        )
    )
    exchange()
    return client


def uplink_send_us(directory: Path, *, reencode: bool, batches: int = SEND_BATCHES) -> float:
    """Microseconds per batch from a spooled payload to the bytes for the QUIC link
    (``reencode``: decoded and encoded again on the way, as before)."""
    table = _observed_table(BATCH_AGENTS)
    path = Path(tempfile.mkdtemp(dir=directory)) / "spool.db"
    with Spool(path) as spool:
        for seq in range(1, batches + 1):
            batch = ObservationBatch(
                seq=seq,
                tick=seq,
                agent_ids=table.ids,
                observations=table.observations,
                rewards=table.rewards,
            )
            spool.append(seq, encode_payload(batch), count=BATCH_AGENTS)
        client = _ready_client(credit=batches)
        elapsed = 0.0
        after = 0
        while pending := spool.pending(after_seq=after, limit=256):
            start = time.perf_counter()
            for seq, payload in pending:
                if reencode:
                    client.send(decode_payload(payload))
                else:
                    client.send_encoded(FrameType.OBS_BATCH, payload, count=spool.count(seq))
                client.data_to_send()
                after = seq
            elapsed += time.perf_counter() - start
    return elapsed / batches * 1e6


def action_check_us(agents: int, bounds: tuple[tuple[float, float], ...] | None) -> float:
    """Microseconds per check of ``agents`` rows of valid actions (median of rounds)."""
    check = ActionCheck(ACTION_DIM, bounds)
    rng = np.random.default_rng(7)
    actions = rng.uniform(-1.0, 1.0, size=(agents, ACTION_DIM)).astype(np.float32)
    rounds = []
    for _ in range(ACTION_CHECK_ROUNDS):
        start = time.perf_counter()
        for _ in range(ACTION_CHECKS):
            check.check(actions, policy="bench")
        rounds.append((time.perf_counter() - start) / ACTION_CHECKS * 1e6)
    return statistics.median(rounds)


def run(*, agents: int = AGENTS, seconds: float = CASE_SECONDS) -> list[BenchResult]:
    table = _observed_table(agents)
    results: list[BenchResult] = []

    def record(case: str, rate: float) -> None:
        results.append(BenchResult("edge", case, "steps_per_s", rate, "agent_steps/s"))

    table.state[:] = 0.0
    native_step = load_step(build_native("flocking"))
    obs, state, actions = table.observations, table.state, table.actions

    def native() -> None:
        native_step(agents, obs.ctypes.data, state.ctypes.data, actions.ctypes.data)

    unguarded = ModuleCache(cache_dir=None, settings=EngineSettings(epoch_interruption=False))
    guarded = ModuleCache(cache_dir=None)
    flocking = module_path("flocking")
    with (
        WasmPolicy(flocking, cache=unguarded, deadline_s=None, validate_actions=False) as bare,
        WasmPolicy(flocking, cache=guarded, deadline_s=GUARDED_DEADLINE_S) as sandboxed,
    ):
        rates = _interleaved_rates(
            {
                "wasm": lambda: bare.step(obs, state, actions),
                "wasm_guarded": lambda: sandboxed.step(obs, state, actions),
                "native": native,
            },
            agents,
            seconds,
        )
    for case, rate in rates.items():
        record(case, rate)

    table.state[:] = 0.0
    record(
        "numpy",
        _rate(lambda: boids_numpy(table.observations, table.state, table.actions), agents, seconds),
    )

    actors = [BoidActor() for _ in range(agents)]
    record("actor", _rate(lambda: run_actors(actors, table), agents, seconds))

    results.append(
        BenchResult("edge", "agent_table", "bytes_per_agent", bytes_per_agent(), "B/agent")
    )
    with tempfile.TemporaryDirectory(prefix="edgeswarm-bench-") as directory:
        cache_ms = cold_start_ms(Path(directory) / "modules")
    results.append(BenchResult("edge", "module_cache", "cold_start_ms", cache_ms, "ms"))
    compile_ms = cold_start_ms(None)
    results.append(BenchResult("edge", "module_compile", "cold_start_ms", compile_ms, "ms"))
    with tempfile.TemporaryDirectory(prefix="edgeswarm-bench-") as directory:
        for case, reencode in (("uplink_send", False), ("uplink_send_reencoded", True)):
            us = uplink_send_us(Path(directory), reencode=reencode)
            results.append(BenchResult("edge", case, "us_per_batch", us, "us"))
    for case, bounds in (
        ("action_check", None),
        ("action_check_bounded", ((-1.0, 1.0), (-2.0, 2.0))),
    ):
        us = action_check_us(agents, bounds)
        results.append(BenchResult("edge", case, "us_per_step", us, "us"))
    return results
