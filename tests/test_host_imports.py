"""The "es" host imports: seeded random, bounds checks, shared state, models, log, time."""

import logging
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeswarm.agents_wasm import module_path
from edgeswarm.edge import AgentTable
from edgeswarm.edge.policy import (
    FuelBudget,
    LocalSwarmState,
    ModuleCache,
    PolicyFuelExhausted,
    PolicySet,
    PolicySpec,
    PolicyTrap,
    WasmPolicy,
)
from edgeswarm.edge.policy.engine import EngineSettings
from edgeswarm.edge.policy.errors import PolicyDeadlineExceeded
from edgeswarm.edge.policy.host_imports import HOST_IMPORTS, LOG_BURST, MAX_LOG_BYTES
from edgeswarm.edge.policy.reference import anomaly_numpy
from edgeswarm.edge.policy.sandbox import HostCallCap
from edgeswarm.edge.policy.swarm_state import SwarmStateRefusedError
from edgeswarm.models import ModelRegistry, anomaly_reference, write_anomaly_model
from tests import fuzz_targets
from tests.fuzz_targets import Span, call_leaving_the_rest
from tests.hostile_modules import FLAG_STORM
from tests.wasm_fixtures import MODEL_USER, PROBE, RANDOM_WALKER, STRINGS

S = STRINGS
OUT = 8192  # scratch offset inside the first pages of the probe's memory
PAST = 0xFFFF_FFF0  # far past the end of memory (as an i32 it is negative)


@pytest.fixture(scope="module")
def cache():
    return ModuleCache(cache_dir=None)


@pytest.fixture
def probe(cache):
    with WasmPolicy(PROBE, cache=cache, swarm=LocalSwarmState()) as policy:
        yield policy


def signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def random_bytes(cache: ModuleCache, seed: int, slot: int, length: int = 64) -> bytes:
    with WasmPolicy(PROBE, cache=cache, seed=seed, slot=slot) as policy:
        assert policy.call("probe_random_fill", OUT, length) == 0
        return policy.read_memory(OUT, length)


def test_random_fill_is_seeded_by_edge_seed_and_slot(cache):
    same = random_bytes(cache, 1, 0)
    assert same == random_bytes(cache, 1, 0)
    assert same != random_bytes(cache, 1, 1)
    assert same != random_bytes(cache, 2, 0)
    assert len(set(same)) > 16  # looks random


def test_random_policy_trajectories_are_identical_for_the_same_seed(cache):
    def trajectory(seed: int) -> list[bytes]:
        table = AgentTable.create(count=5, obs_dim=8, state_dim=2, act_dim=2)
        out = []
        with PolicySet(
            [PolicySpec(RANDOM_WALKER), PolicySpec(RANDOM_WALKER)], cache=cache, seed=seed
        ) as pset:
            table.policy[3:] = 1
            for _ in range(100):
                pset.step(table)
                out.append(table.actions.tobytes())
            assert pset.quarantined_count == 0
        return out

    first = trajectory(11)
    assert first == trajectory(11)
    assert first != trajectory(12)
    # the two slots draw from different generators
    assert first[0][: 3 * 8] != first[0][3 * 8 :][: 3 * 8]


def test_random_fill_out_of_bounds_traps(probe):
    with pytest.raises(PolicyTrap, match="random_fill"):
        probe.call("probe_random_fill", signed(PAST), 64)
    with pytest.raises(PolicyTrap, match="random_fill"):
        probe.call("probe_random_fill", OUT, signed(0x7FFF_FFFF))


def test_counter_add_declared_and_undeclared_keys():
    swarm = LocalSwarmState()
    with WasmPolicy(PROBE, cache=ModuleCache(cache_dir=None), swarm=swarm) as probe:
        assert probe.call("probe_counter_add", S["hits"], 4, 3) == 0
        assert probe.call("probe_counter_add", S["hits"], 4, -1) == 0
        assert probe.call("probe_counter_add", S["nope"], 4, 5) == -1
        assert probe.call("probe_counter_add", S["hits"], 3, 5) == -1  # "hit" is not declared
        assert probe.call("probe_counter_add", signed(PAST), 4, 5) == -1
        assert probe.call("probe_counter_add", S["hits"], signed(PAST), 5) == -1
        assert probe.call("probe_counter_add", S["bad_utf8"], 2, 5) == -1
    assert swarm.snapshot().counters == {"hits": 2}


def test_set_add_checks_key_then_item():
    swarm = LocalSwarmState()
    with WasmPolicy(PROBE, cache=ModuleCache(cache_dir=None), swarm=swarm) as probe:
        assert probe.call("probe_set_add", S["seen"], 4, S["item"], 4) == 0
        assert probe.call("probe_set_add", S["nope"], 4, S["item"], 4) == -1
        assert probe.call("probe_set_add", S["seen"], 4, signed(PAST), 4) == -2
        assert probe.call("probe_set_add", S["seen"], 4, S["item"], 257) == -2  # > 256 bytes
        assert probe.call("probe_set_add", S["seen"], 4, S["bad_utf8"], 2) == -2
    assert swarm.snapshot().sets == {"seen": frozenset({"item"})}


def test_flag_get_reads_shared_flags():
    swarm = LocalSwarmState()
    with WasmPolicy(PROBE, cache=ModuleCache(cache_dir=None), swarm=swarm) as probe:
        assert probe.call("probe_flag_get", S["evade"], 5) == 0
        swarm.flag_set("evade", True)
        assert probe.call("probe_flag_get", S["evade"], 5) == 1
        swarm.flag_set("nope", True)
        assert probe.call("probe_flag_get", S["nope"], 4) == -1
        assert probe.call("probe_flag_get", signed(PAST), 5) == -1


def test_policies_of_a_set_share_its_swarm_state(cache):
    swarm = LocalSwarmState()
    with PolicySet([PolicySpec(PROBE), PolicySpec(PROBE)], cache=cache, swarm=swarm) as pset:
        for slot in (0, 1):
            policy = pset[slot]
            assert isinstance(policy, WasmPolicy)
            assert policy.call("probe_counter_add", S["hits"], 4, 10) == 0
    assert swarm.snapshot().counters == {"hits": 20}


@pytest.fixture(scope="module")
def models():
    with ModelRegistry() as registry:
        registry.register_bytes("anomaly", write_anomaly_model())
        yield registry


def test_model_infer_matches_the_numpy_reference(cache, models):
    rng = np.random.default_rng(0)
    obs = rng.normal(0.0, 2.5, (300, 8)).astype(np.float32)
    state = np.zeros((300, 0), np.float32)
    scores = np.zeros((300, 1), np.float32)
    with WasmPolicy(MODEL_USER, cache=cache, models=models) as policy:
        policy.step(obs, state, scores)
    np.testing.assert_allclose(scores, anomaly_reference(obs), rtol=1e-5, atol=1e-6)
    assert scores.max() > 0.5 > scores.min()  # both kinds of rows were present


def test_model_dims_tell_the_policy_the_shapes(cache, models):
    with WasmPolicy(PROBE, cache=cache, models=models) as probe:
        assert probe.call("probe_model_dims", S["anomaly"], 7) == (8 << 32) | 1
        assert probe.call("probe_model_dims", S["nope"], 4) == -1  # undeclared
        assert probe.call("probe_model_dims", signed(PAST), 7) == -1  # bad pointer
    with WasmPolicy(PROBE, cache=cache) as probe:  # declared, no registry on this edge
        assert probe.call("probe_model_dims", S["anomaly"], 7) == -1


def test_model_infer_error_codes(cache, models):
    with WasmPolicy(PROBE, cache=cache, models=models) as probe:
        rows = np.ones((4, 8), np.float32)
        memory_in = OUT
        memory_out = OUT + rows.nbytes
        # unknown / undeclared model ids
        assert probe.call("probe_model_infer", S["nope"], 4, memory_in, 4, memory_out) == -1
        assert probe.call("probe_model_infer", signed(PAST), 7, memory_in, 4, memory_out) == -1
        # bad shapes or pointers
        assert probe.call("probe_model_infer", S["anomaly"], 7, memory_in, -1, memory_out) == -2
        assert probe.call("probe_model_infer", S["anomaly"], 7, signed(PAST), 4, memory_out) == -2
        assert probe.call("probe_model_infer", S["anomaly"], 7, memory_in, 4, signed(PAST)) == -2
        assert probe.call("probe_model_infer", S["anomaly"], 7, memory_in, 1 << 24, OUT) == -2
        assert probe.call("probe_model_infer", S["anomaly"], 7, memory_in, 0, memory_out) == 0
        assert probe.call("probe_model_infer", S["anomaly"], 7, memory_in, 4, memory_out) == 0
    # declared, but the edge has no model registry
    with WasmPolicy(PROBE, cache=cache) as probe:
        assert probe.call("probe_model_infer", S["anomaly"], 7, OUT, 1, OUT + 64) == -1
    # declared, but not loaded in the registry
    with ModelRegistry() as empty, WasmPolicy(PROBE, cache=cache, models=empty) as probe:
        assert probe.call("probe_model_infer", S["anomaly"], 7, OUT, 1, OUT + 64) == -1


def test_log_goes_to_the_agent_logger_cut_and_rate_limited(cache, caplog):
    now = [0]
    with WasmPolicy(PROBE, cache=cache, clock=lambda: now[0]) as probe:
        with caplog.at_level(logging.DEBUG, logger="edgeswarm.edge.agent"):
            assert probe.call("probe_log", 2, S["hello"], 5) == 0
            assert probe.call("probe_log", 1, signed(PAST), 5) == 0  # dropped, no exception
            probe.call("probe_log", 3, 0, 4096)  # cut to MAX_LOG_BYTES
            for _ in range(LOG_BURST * 2):
                probe.call("probe_log", 0, S["hello"], 5)
        records = [r for r in caplog.records if r.name == "edgeswarm.edge.agent"]
        assert records[0].getMessage() == "probe: hello"
        assert records[0].levelno == logging.WARNING
        assert records[0].policy == "probe"
        assert len(records[1].getMessage()) == len("probe: ") + MAX_LOG_BYTES
        assert len(records) == LOG_BURST
        assert probe.logs_dropped == 1 + LOG_BURST + 2
        now[0] += 1_000_000_000  # a second later the bucket has refilled a little
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="edgeswarm.edge.agent"):
            probe.call("probe_log", 1, S["hello"], 5)
        assert len(caplog.records) == 1


def test_time_ns_is_monotonic_since_load(cache):
    now = [5_000]
    with WasmPolicy(PROBE, cache=cache, clock=lambda: now[0]) as probe:
        assert probe.call("probe_time_ns") == 0
        now[0] += 1234
        assert probe.call("probe_time_ns") == 1234


def test_host_imports_cost_fuel(cache):
    with WasmPolicy(PROBE, cache=cache) as probe:
        probe.call("probe_time_ns")
        used = probe.fuel.base - probe.fuel_left
        assert used >= HOST_IMPORTS["time_ns"].fuel


def test_an_import_that_cannot_pay_its_fuel_ends_the_call(cache):
    with (
        WasmPolicy(PROBE, cache=cache, fuel=FuelBudget(base=1_000)) as probe,
        pytest.raises(PolicyFuelExhausted, match="probe"),
    ):
        probe.call("probe_random_fill", OUT, 50_000)  # costs 50 + 50000/16 > 1000


def test_built_anomaly_module_through_the_real_host(cache, models):
    # edgeswarm/agents_wasm anomaly.c: model_infer + counter_add + log, against its reference.
    path = module_path("anomaly")
    if not path.exists():
        pytest.skip("anomaly.wasm is not built")
    swarm = LocalSwarmState()
    rng = np.random.default_rng(3)
    state = np.zeros((64, 1), np.float32)
    ref_state = np.zeros((64, 1), np.float32)
    actions = np.zeros((64, 2), np.float32)
    ref_actions = np.zeros((64, 2), np.float32)
    alarms = 0
    with WasmPolicy(path, cache=cache, models=models, swarm=swarm) as policy:
        for _ in range(10):
            obs = rng.normal(0.0, 3.0, (64, 8)).astype(np.float32)
            policy.step(obs, state, actions)
            alarms += anomaly_numpy(anomaly_reference(obs), ref_state, ref_actions)
            np.testing.assert_allclose(actions, ref_actions, rtol=1e-5, atol=1e-6)
    assert alarms > 0
    assert swarm.snapshot().counters == {"anomalies": alarms}


# -- fuzz: every pointer/length argument of every import -------------------------------------

PAGE = 65_536
I32 = st.one_of(
    st.sampled_from(
        [0, 1, 15, 16, PAGE - 16, PAGE - 1, PAGE, PAGE + 1, 1 << 30, (1 << 31) - 1, 1 << 31]
        + [(1 << 32) - k for k in (1, 4, 16, PAGE)]
    ),
    st.integers(0, PAGE + 64),
    st.integers(0, (1 << 32) - 1),
).map(signed)
"""i32 arguments as a guest can pass them: boundaries of the 1-page memory, wrap-arounds."""


@pytest.fixture
def fuzz_target(models):
    swarm = LocalSwarmState()
    with WasmPolicy(PROBE, cache=ModuleCache(cache_dir=None), swarm=swarm, models=models) as probe:
        yield probe, swarm


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ptr=I32, length=I32, level=I32)
def test_fuzz_log_and_random_fill(fuzz_target, ptr, length, level):
    probe, _ = fuzz_target
    assert call_leaving_the_rest(probe, "probe_log", (level, ptr, length)) == 0
    result = call_leaving_the_rest(
        probe,
        "probe_random_fill",
        (ptr, length),
        [Span(ptr, length & 0xFFFF_FFFF)],
    )
    in_bounds = (ptr & 0xFFFF_FFFF) + (length & 0xFFFF_FFFF) <= PAGE
    if in_bounds and length & 0xFFFF_FFFF <= 100_000:
        assert result == 0
    else:
        assert isinstance(result, PolicyTrap | PolicyFuelExhausted)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=I32, key_len=I32, item=I32, item_len=I32, delta=st.integers(-(1 << 63), (1 << 63) - 1))
def test_fuzz_shared_state(fuzz_target, key, key_len, item, item_len, delta):
    probe, swarm = fuzz_target
    before = swarm.snapshot()
    counted = call_leaving_the_rest(probe, "probe_counter_add", (key, key_len, delta))
    added = call_leaving_the_rest(probe, "probe_set_add", (key, key_len, item, item_len))
    flag = call_leaving_the_rest(probe, "probe_flag_get", (key, key_len))
    assert counted in (0, -1)
    assert added in (0, -1, -2)
    assert flag in (1, 0, -1)
    if counted == -1:
        assert swarm.snapshot().counters == before.counters  # refused means not applied
    if added != 0:
        assert swarm.snapshot().sets == before.sets


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(model_id=I32, id_len=I32, source=I32, n=I32, target=I32)
def test_fuzz_models(fuzz_target, model_id, id_len, source, n, target):
    probe, _ = fuzz_target
    dims = call_leaving_the_rest(probe, "probe_model_dims", (model_id, id_len))
    assert dims in ((8 << 32) | 1, -1)
    rows = n if n >= 0 else 0
    inferred = call_leaving_the_rest(
        probe,
        "probe_model_infer",
        (model_id, id_len, source, n, target),
        [Span(target, 4 * rows)],
    )
    assert inferred in (0, -1, -2) or isinstance(inferred, PolicyFuelExhausted)
    if inferred == 0 and n > 0:
        assert (target & 0xFFFF_FFFF) + 4 * n <= PAGE
        assert (source & 0xFFFF_FFFF) + 32 * n <= PAGE


@pytest.mark.parametrize("n", [1 << 30, 1 << 29, (1 << 27) + 1, 0x7FFF_FFFF])
def test_model_infer_lengths_are_checked_without_wrapping(fuzz_target, n):
    probe, _ = fuzz_target
    # n * 8 * 4 is a multiple of 2**32 (or close to one): masked to 32 bits it would pass.
    assert (
        call_leaving_the_rest(
            probe, "probe_model_infer", (S["anomaly"], 7, 0, n, OUT), [Span(OUT, 0)]
        )
        == -2
    )


NAMES = [(2096, 7), (2048, 4), (2064, 4), (2080, 5), (2128, 4), (2160, 2)]
"""(pointer, length) of the probe's strings: declared names, undeclared, bad UTF-8."""
VALUE = st.one_of(
    st.sampled_from(fuzz_targets.INTERESTING_I32),
    st.integers(0, 300),
    st.integers(0, PAGE + 64),
    st.integers(0, (1 << 32) - 1),
)


NAME = st.one_of(st.just(NAMES[0]), st.sampled_from(NAMES), st.tuples(VALUE, VALUE))
HEAVY_NAME = st.one_of(st.just(NAMES[0]), NAME)
"""The heavy lane's calls: the one heavy model the probe declares, more often."""
POINTER = st.one_of(st.integers(4096, PAGE // 2), st.integers(4096, PAGE), VALUE)
COUNT = st.one_of(st.integers(1, 64), st.integers(-2, 80), VALUE)
SHAPES = {
    "log": (VALUE, NAME),
    "time_ns": (),
    "random_fill": (POINTER, COUNT),
    "counter_add": (NAME,),
    "set_add": (NAME, NAME),
    "flag_get": (NAME,),
    "model_dims": (NAME,),
    "model_infer": (NAME, POINTER, COUNT, POINTER),
    "heavy_request": (HEAVY_NAME, POINTER, POINTER, COUNT, COUNT),
    "heavy_results": (HEAVY_NAME, POINTER, POINTER, POINTER, COUNT, COUNT),
}
"""Each import's arguments shaped like real use (a name, pointers, counts), each part
any value too, so that calls get past the first check often enough to reach the rest."""


@st.composite
def import_calls(draw: st.DrawFn) -> bytes:
    """One call of the target's input (:func:`fuzz_targets.encode_call`)."""
    name = draw(st.sampled_from(fuzz_targets.IMPORT_CALLS))
    args: list[int] = []
    for part in SHAPES[name]:
        drawn = draw(part)
        args.extend(drawn if isinstance(drawn, tuple) else (drawn,))
    delta = draw(st.integers(-(1 << 63), (1 << 63) - 1))
    return fuzz_targets.encode_call(name, args, delta)


@settings(max_examples=400, deadline=None)
@given(calls=st.lists(import_calls(), max_size=10), tail=st.binary(max_size=64))
def test_fuzz_every_import_in_any_order(calls, tail):
    """The target scripts/fuzz runs for longer (``host_imports``), the heavy lane's two
    imports included: any sequence of calls with any pointers and lengths."""
    fuzz_targets.host_imports(b"".join(calls) + tail)


def test_the_import_target_reaches_every_import_and_both_outcomes():
    """The target's input reaches real work, not only refusals: heavy requests queued
    and their results written back, and the memory checker sees a stray write."""
    probe = fuzz_targets.import_probe()
    anomaly = (S["anomaly"], 7)
    request = fuzz_targets.encode_call("heavy_request", [*anomaly, 4096, 0, 7, 1])
    fuzz_targets.host_imports(request, probe)
    assert probe.lane.last_request is not None
    assert probe.lane.last_request[0].size > 0
    queued = list(probe.lane.queued)
    assert len(queued) > 16
    assert max(queued[16:]) < 7
    results = fuzz_targets.encode_call("heavy_results", [*anomaly, 8192, 8448, 8704, 20, 1])
    fuzz_targets.host_imports(results, probe)
    assert probe.lane.queued == queued[20:]
    assert probe.policy.read_memory(8192, 80) == np.asarray(queued[:20], np.int32).tobytes()
    with pytest.raises(AssertionError, match="wrote memory"):
        call_leaving_the_rest(probe.policy, "probe_random_fill", (OUT, 16), [Span(OUT, 8)])
    probe.policy.close()


class RefusingSwarm(LocalSwarmState):
    """Shared state that refuses everything, as a stricter document might."""

    def counter_add(self, key, delta):
        raise SwarmStateRefusedError("no", part="key")

    def set_add(self, key, item):
        raise SwarmStateRefusedError("no", part="item" if key == "seen" else "key")

    def flag_get(self, key):
        raise SwarmStateRefusedError("no", part="key")


def test_refused_updates_return_error_codes_never_zero(cache):
    with WasmPolicy(PROBE, cache=cache, swarm=RefusingSwarm()) as probe:
        assert probe.call("probe_counter_add", S["hits"], 4, 1) == -1
        assert probe.call("probe_set_add", S["seen"], 4, S["item"], 4) == -2
        assert probe.call("probe_flag_get", S["evade"], 5) == -1


def test_empty_set_item_is_refused(cache):
    swarm = LocalSwarmState()
    with WasmPolicy(PROBE, cache=cache, swarm=swarm) as probe:
        assert probe.call("probe_set_add", S["seen"], 4, S["item"], 0) == -2
    assert swarm.snapshot().sets == {}


def test_host_calls_check_the_deadline_themselves():
    # On an engine without epoch checks only the host calls can notice the deadline.
    no_epochs = ModuleCache(cache_dir=None, settings=EngineSettings(epoch_interruption=False))
    with WasmPolicy(
        FLAG_STORM,
        cache=no_epochs,
        fuel=FuelBudget(base=10**15),
        host_calls=HostCallCap(base=10**9),
        deadline_s=0.02,
    ) as storm:
        start = time.monotonic()
        with pytest.raises(PolicyDeadlineExceeded, match=r"deadline of 20 ms \(in a host call\)"):
            storm.call("es_step", 1, 0, 0, 0)
        assert time.monotonic() - start < 1.0
