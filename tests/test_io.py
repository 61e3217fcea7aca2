"""Sources and sinks without a broker: the interface, the simulator pair, plug-ins,
the MQTT payloads and inbox (sans-I/O), recordings and action-stream comparison."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from edgeswarm.edge.agent_table import AgentTable
from edgeswarm.edge.io import (
    ENTRY_POINT_GROUP,
    ActionSink,
    AgentIO,
    IoContext,
    IoError,
    ObservationSource,
    available_kinds,
    open_io,
)
from edgeswarm.edge.io.actions_file import ActionRecorder, compare_actions
from edgeswarm.edge.io.inbox import ObservationInbox
from edgeswarm.edge.io.mqtt_address import PASSWORD_ENV, parse_mqtt_address
from edgeswarm.edge.io.mqtt_codec import (
    MalformedPayloadError,
    decode_agent_observation,
    decode_batch,
    encode_observation_batch,
)
from edgeswarm.edge.io.simulator import SimulatorIO
from edgeswarm.edge.world import FlockingWorld


def context(agents: int = 4, first: int = 100) -> IoContext:
    return IoContext(agents=agents, first_agent_id=first, obs_dim=8, act_dim=2)


def table(agents: int = 4, first: int = 100) -> AgentTable:
    return AgentTable.create(count=agents, obs_dim=8, state_dim=2, act_dim=2, first_id=first)


async def test_simulator_is_one_source_and_sink_pair_equal_to_the_world() -> None:
    io = open_io("sim", context(agents=50, first=0))
    assert io.kind == "sim"
    assert io.source is io.sink  # type: ignore[comparison-overlap]
    assert isinstance(io.source, ObservationSource)
    assert isinstance(io.sink, ActionSink)
    reference = FlockingWorld(50, seed=0)
    t, expected = table(50, 0), table(50, 0)
    t.fresh.fill(0)
    await io.start()
    for _ in range(3):
        io.source.sense(t, t.fresh, 0.0)
        reference.sense(expected)
        np.testing.assert_array_equal(t.observations, expected.observations)
        assert t.fresh.all()
        t.actions[:] = expected.actions[:] = 0.5
        io.sink.act(t, t.fresh)
        reference.apply(expected.actions)
    await io.close()
    assert isinstance(io.source, SimulatorIO)
    np.testing.assert_array_equal(io.source.world.positions, reference.positions)


def test_unknown_kind_names_what_is_available() -> None:
    with pytest.raises(IoError, match=r"no source/sink kind 'serial'.*sim, mqtt"):
        open_io("serial:/dev/ttyUSB0", context())
    with pytest.raises(IoError, match="no argument"):
        open_io("sim:x", context())


PLUGIN = '''
"""A tiny third-party source/sink: every agent observes its own row number."""
import numpy as np
from edgeswarm.edge.io import AgentIO

class Counter:
    def __init__(self, step):
        self.step = step
        self.acted = []
    async def start(self):
        pass
    def sense(self, table, fresh, now):
        table.observations[:] = (np.arange(len(table)) * self.step)[:, None]
        fresh.fill(1)
    def act(self, table, fresh):
        self.acted.append(table.actions.copy())
    async def close(self):
        pass

def open_counter(argument, context):
    io = Counter(float(argument or 1))
    return AgentIO("counter", io, io)
'''


@pytest.fixture
def plugin_on_path(tmp_path: Path) -> object:
    """A distribution installed the way pip lays it out: a module and its dist-info."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "counter_io.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "counter_io-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: counter-io\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\ncounter = counter_io:open_counter\n"
        "broken = counter_io:no_such_function\n"
    )
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("counter_io", None)


@pytest.mark.usefixtures("plugin_on_path")
async def test_a_plugin_distribution_is_loaded_by_name() -> None:
    assert "counter" in {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert "counter" in available_kinds()
    io = open_io("counter:2.5", context())
    assert isinstance(io, AgentIO)
    assert io.kind == "counter"
    t = table()
    await io.start()
    io.source.sense(t, t.fresh, 0.0)
    assert t.observations[:, 0].tolist() == [0.0, 2.5, 5.0, 7.5]
    io.sink.act(t, t.fresh)
    await io.close()
    with pytest.raises(IoError, match="plug-in 'counter_io:no_such_function' failed to load"):
        open_io("broken", context())


def test_mqtt_address_options_and_refusals() -> None:
    o = parse_mqtt_address(
        "mqtt://ops@127.0.0.1:1999/plant/a?qos_obs=1&qos_act=2&act=batch&client_id=e1",
        env={PASSWORD_ENV: "s3cret"},
    )
    assert (o.host, o.port, o.prefix, o.username, o.password) == (
        "127.0.0.1", 1999, "plant/a", "ops", "s3cret"
    )  # fmt: skip
    assert (o.qos_obs, o.qos_act, o.act_batched, o.client_id) == (1, 2, True, "e1")
    assert o.obs_topic == "plant/a/obs/#"
    assert o.act_topic(7) == "plant/a/act/7"
    assert parse_mqtt_address("mqtts://h/p", env={}).port == 8883
    for bad, match in (
        ("mqtt://u:pw@h/p", "password"),
        ("mqtt://h:1883/", "PREFIX"),
        ("mqtt://h/p/#", "PREFIX"),
        ("mqtt://h/p?qos_obs=3", "qos_obs"),
        ("mqtt://h/p?colour=red", "unknown option"),
        ("mqtt://h/p?ca=x.pem", "mqtts"),
    ):
        with pytest.raises(IoError, match=match):
            parse_mqtt_address(bad, env={})


def test_payloads_json_msgpack_and_batches() -> None:
    import msgpack  # type: ignore[import-untyped]

    row, reward = decode_agent_observation(b'{"obs": [1,2,3,4,5,6,7,8], "reward": 0.5}', 8)
    assert row.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert reward == 0.5
    row, reward = decode_agent_observation(msgpack.packb([0.5] * 8), 8)
    assert row.tolist() == [0.5] * 8
    assert reward == 0.0
    ids = np.array([3, 1], dtype=np.uint32)
    obs = np.arange(16, dtype=np.float32).reshape(2, 8)
    got_ids, got_obs, rewards = decode_batch(encode_observation_batch(ids, obs), 8)
    assert got_ids.tolist() == [3, 1]
    assert np.array_equal(got_obs, obs)
    assert rewards is None
    for payload, reason in (
        (b"", "decode"),
        (b"{not json", "decode"),
        (b"[1, 2]", "shape"),
        (b'["a",1,1,1,1,1,1,1]', "value"),
        (b"[NaN,1,1,1,1,1,1,1]", "value"),
        (b"\xc1", "decode"),
    ):
        with pytest.raises(MalformedPayloadError) as caught:
            decode_agent_observation(payload, 8)
        assert caught.value.reason == reason, payload
    with pytest.raises(MalformedPayloadError, match="shape"):
        decode_batch(encode_observation_batch(ids, obs[:, :4]), 8)


def test_inbox_fresh_mask_follows_max_age() -> None:
    inbox = ObservationInbox(agents=4, first_id=100, obs_dim=8)
    rows, unknown = inbox.rows_of(np.array([100, 103, 104, 99], dtype=np.uint32))
    assert rows.tolist() == [0, 3]
    assert unknown == 2
    inbox.put_rows(rows, np.ones((2, 8), dtype=np.float32), None, now=10.0)
    inbox.put_one(1, np.full(8, 2, dtype=np.float32), 0.25, now=11.0)
    t = table()
    assert inbox.fill(t, t.fresh, now=11.5, max_age_s=1.0) == 3  # row 2 never heard from
    assert t.fresh.tolist() == [0, 1, 0, 0]  # rows 0 and 3 are 1.5 s old
    assert t.observations[0].tolist() == [1.0] * 8  # a stale row keeps its last observation
    assert t.rewards[1] == np.float32(0.25)
    assert inbox.fill(t, t.fresh, now=1e6, max_age_s=None) == 1  # no max age: heard is fresh


def test_action_streams_compare_to_the_first_differing_tick_and_agent(tmp_path: Path) -> None:
    t = table()
    paths = [tmp_path / "a.actions", tmp_path / "b.actions"]
    for path, change in zip(paths, (False, True), strict=True):
        recorder = ActionRecorder(path)
        for tick in range(5):
            t.actions[:] = tick
            if change and tick == 3:
                t.actions[2, 1] = 3.5
            recorder.write(tick, t)
        recorder.close()
    same = compare_actions(paths[0], paths[0])
    assert same.identical
    assert same.ticks == 5
    diff = compare_actions(paths[0], paths[1])
    assert not diff.identical
    assert diff.difference is not None
    assert (diff.difference.tick, diff.difference.agent_id) == (3, 102)


def test_publish_updated_takes_each_new_observation_once() -> None:
    inbox = ObservationInbox(agents=3, first_id=0, obs_dim=8)
    inbox.put_one(2, np.ones(8, dtype=np.float32), 0.0, now=1.0)
    assert inbox.take_updated().tolist() == [False, False, True]
    assert not inbox.take_updated().any()  # taken: the next tick acts for nobody new


def test_replay_addresses_are_checked_before_the_edge_starts(tmp_path: Path) -> None:
    with pytest.raises(IoError, match="no such file"):
        open_io(f"replay:{tmp_path / 'missing.rec'}", context())
    recording = tmp_path / "r.rec"
    recording.write_bytes(b"")
    with pytest.raises(IoError, match="speed=recorded or speed=fast"):
        open_io(f"replay:{recording}?speed=warp", context())


def test_edge_with_an_unknown_io_fails_in_one_line(tmp_path: Path) -> None:
    import subprocess

    from .conftest import edgeswarm_command

    ca = tmp_path / "ca.pem"
    ca.write_text("")  # only its existence is checked before --io
    done = subprocess.run(
        edgeswarm_command(
            *("edge", "--edge-id", "x", "--ca", str(ca)),
            *("--io", "serial:/dev/ttyUSB0", "--data-dir", str(tmp_path), "--metrics-port", "0"),
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: edge x: --io 'serial:/dev/ttyUSB0': no source/sink kind 'serial' (available: "
        "sim, mqtt, mqtts, replay; plug-ins register in the entry-point group 'edgeswarm.io')"
    ]


def test_a_policy_one_column_wider_sees_the_fresh_mask_and_two_wider_is_refused() -> None:
    from edgeswarm.edge.policy.errors import PolicyAbiError
    from edgeswarm.edge.policy.module_cache import ModuleCache
    from edgeswarm.edge.policy.set import PolicySet, PolicySpec

    from .mqtt_policies import MASK_ECHO
    from .wasm_fixtures import policy_wat

    t = AgentTable.create(count=3, obs_dim=8, state_dim=2, act_dim=2)
    t.observations[:, 0] = [5.0, 6.0, 7.0]
    t.fresh[:] = [1, 0, 1]
    cache = ModuleCache(cache_dir=None)
    with PolicySet([PolicySpec(MASK_ECHO)], cache=cache) as masked:
        masked.step(t)
    assert t.actions.tolist() == [[1.0, 5.0], [0.0, 6.0], [1.0, 7.0]]
    too_wide = policy_wat(name="too_wide", descriptor={"obs_dim": 10, "state_dim": 0})
    with PolicySet([PolicySpec(too_wide)], cache=cache) as refused:
        refused.step(t)
        assert isinstance(refused.quarantined[0], PolicyAbiError)


def test_the_action_queue_is_bounded_and_drops_the_oldest_counted() -> None:
    from edgeswarm.edge.io.mqtt import MqttIO

    ctx = context(agents=3, first=0)
    io = MqttIO(parse_mqtt_address("mqtt://127.0.0.1/p?out_queue=2", env={}), ctx)
    t = table(3, 0)
    io.act(t, np.ones(3, dtype=np.uint8))
    assert [topic for topic, _ in io._outbox] == ["p/act/1", "p/act/2"]
    dropped = ctx.metrics.registry.get_sample_value(
        "edgeswarm_edge_io_dropped_messages_total", {"io": "mqtt", "direction": "out"}
    )
    assert dropped == 1
    io.act(t, np.array([0, 0, 1], dtype=np.uint8))  # a stale agent gets no action
    assert [topic for topic, _ in io._outbox] == ["p/act/2", "p/act/2"]


async def test_replay_at_recorded_speed_takes_the_newest_record_due(tmp_path: Path) -> None:
    from edgeswarm.edge.io.replay import OBSERVATIONS_KIND, ReplayIO
    from edgeswarm.storage.recording import RecordingWriter
    from edgeswarm.wire.arrays import encode_array

    path = tmp_path / "r.rec"
    with RecordingWriter(path, OBSERVATIONS_KIND) as writer:
        for tick, at in enumerate((100.0, 100.05, 110.0)):
            writer.write(
                {
                    "tick": tick,
                    "t": at,
                    "agent_ids": encode_array(np.array([101], np.uint32), copy=True),
                    "observations": encode_array(np.full((1, 8), tick, np.float32), copy=True),
                    "rewards": encode_array(np.zeros(1, np.float32), copy=True),
                }
            )
    io = ReplayIO(path, context(), recorded_speed=True)
    await io.start()
    start = io._started_at
    t = table()
    io.sense(t, t.fresh, start + 0.1)  # ticks 0 and 1 are due: the newest, 1, is taken
    assert (t.observations[1, 0], t.fresh.tolist(), io.skipped) == (1.0, [0, 1, 0, 0], 1)
    io.sense(t, t.fresh, start + 5.0)  # nothing due yet: every agent stale
    assert (t.fresh.tolist(), io.finished) == ([0, 0, 0, 0], False)
    io.sense(t, t.fresh, start + 10.5)
    assert (t.observations[1, 0], io.finished) == (2.0, True)
    await io.close()


def test_a_shorter_action_stream_differs_where_it_ends(tmp_path: Path) -> None:
    t = table()
    short, long = tmp_path / "short.act", tmp_path / "long.act"
    for path, ticks in ((short, 2), (long, 3)):
        recorder = ActionRecorder(path)
        for tick in range(ticks):
            recorder.write(tick, t)
        recorder.close()
    result = compare_actions(short, long)
    assert result.ticks == 2
    assert result.difference is not None
    assert result.difference.tick == 2
    assert result.difference.what == f"{short} ends before it"
