"""Fuzz targets shared by the bounded hypothesis tests (tests/test_fuzz_session.py and
tests/test_host_imports.py, in scripts/test) and the longer coverage-guided run
(scripts/fuzz, atheris).

Each target takes bytes and raises only AssertionError when a promise breaks: the frame
decoder raises nothing but RemoteProtocolError; a session fed anything, in any state,
never raises, ends closed after a violation, and says nothing more once closed; a guest
calling the "es" host imports with any pointers and lengths, in any order, gets an answer
from the ABI's set or a trap, and no byte of its memory changes outside what the import
may write.
"""

from __future__ import annotations

import contextlib
import functools
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from edgeswarm.wire import RemoteProtocolError, Session, SessionConfig
from edgeswarm.wire.codec import decode_payload
from edgeswarm.wire.framing import FrameReader

STARTS = ("server", "client", "server_ready", "client_ready")
"""Where a session target starts: fresh either side, or after a full handshake."""


def decoder(data: bytes) -> None:
    """Any payload: a frame, or a RemoteProtocolError (before and after AUTH limits)."""
    for preauth in (True, False):
        with contextlib.suppress(RemoteProtocolError):
            decode_payload(data, preauth=preauth)
    reader = FrameReader(1 << 16)
    reader.feed(data)
    with contextlib.suppress(RemoteProtocolError):
        for _ in range(len(data) + 1):  # bounded: each payload takes at least a byte
            if reader.next_payload() is None:
                break


def start_session(start: str) -> Session:
    from tests.test_wire_session import connected

    if start == "server":
        return Session(SessionConfig(is_client=False), now=0.0)
    if start == "client":
        return Session(SessionConfig(is_client=True), now=0.0)
    client, server = connected()
    return server if start == "server_ready" else client


def session(data: bytes) -> None:
    """Byte 0 picks the start (:data:`STARTS`); then chunks, each prefixed by its length
    byte, are fed to the session as received data, one millisecond apart."""
    if not data:
        return
    subject = start_session(STARTS[data[0] % len(STARTS)])
    while subject.next_event() is not None:
        pass
    at, now, was_closed = 1, 0.0, False
    while at < len(data):
        size = data[at]
        chunk, at = data[at + 1 : at + 1 + size], at + 1 + size
        now += 0.001
        subject.receive_data(chunk, now)
        subject.handle_timer(now)
        if was_closed:
            assert subject.next_event() is None, "an event after the session closed"
            assert subject.data_to_send() == b"", "bytes sent after the session closed"
        while subject.next_event() is not None:
            pass
        subject.data_to_send()
        assert not (was_closed and not subject.closed), "a closed session opened again"
        was_closed = subject.closed


# -- host imports ---------------------------------------------------------------------------

PAGE = 65_536
INTERESTING_I32 = (
    [0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 2048, 2064, 2080, 2096, 2112, 2128, 2144, 2160, 4096]
    + [PAGE - 16, PAGE - 4, PAGE - 1, PAGE, PAGE + 1]
    + [1 << 27, (1 << 27) + 1, 1 << 29, 1 << 30, (1 << 31) - 1, 1 << 31]
    + [(1 << 32) - k for k in (1, 4, 16, PAGE)]
)
"""Small counts and string lengths, the probe's strings (tests/wasm_fixtures.STRINGS),
boundaries of its one-page memory, sizes whose products wrap."""
HEAVY_AGENTS = 40
"""The step size the heavy imports see (``es_step``'s ``n``) while the target runs."""


def signed(value: int) -> int:
    """An unsigned 32-bit value as the i32 a guest passes."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value >= 1 << 31 else value


class Span(NamedTuple):
    """Bytes ``[start, start + length)`` of guest memory an import may write."""

    start: int
    length: int


def call_leaving_the_rest(
    probe: Any, export: str, args: Sequence[int], writable: Sequence[Span] = ()
) -> Any:
    """Call ``export``; return its result (or the policy error), checking that no byte of
    memory changed outside the ``writable`` spans."""
    from edgeswarm.edge.policy import PolicyFuelExhausted, PolicyTrap

    size = probe.memory_bytes
    before = np.frombuffer(probe.read_memory(0, size), np.uint8).copy()
    try:
        result = probe.call(export, *args)
    except (PolicyTrap, PolicyFuelExhausted) as exc:
        result = exc
    after = np.frombuffer(probe.read_memory(0, size), np.uint8)
    changed = np.flatnonzero(before != after)
    allowed = np.zeros(changed.shape, bool)
    for span in writable:
        start = span.start & 0xFFFF_FFFF
        allowed |= (changed >= start) & (changed < start + max(span.length, 0))
    assert allowed.all(), f"{export}{tuple(args)} wrote memory at {changed[~allowed][:4]}"
    return result


class RecordingLane:
    """A heavy lane that records each request and answers it on a later ``results``; it
    starts with results for agents 0..15 waiting."""

    def __init__(self) -> None:
        self.queued: list[int] = list(range(16))
        self.last_request: tuple[NDArray[np.int32], NDArray[np.float32]] | None = None

    def request(
        self, slot: int, model: str, agents: NDArray[np.int32], rows: NDArray[np.float32]
    ) -> int:
        self.last_request = (agents.copy(), rows.copy())
        self.queued.extend(int(agent) for agent in agents[:256])
        return int(agents.shape[0])

    def results(
        self, slot: int, model: str, cap: int, out_dim: int
    ) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float32]]:
        taken, self.queued = self.queued[:cap], self.queued[cap:]
        agents = np.asarray(taken, np.int32)
        return agents, np.zeros_like(agents), np.ones((agents.size, out_dim), np.float32)


class ImportProbe(NamedTuple):
    policy: Any
    swarm: Any
    lane: RecordingLane


@functools.cache
def _compiled() -> tuple[Any, Any]:
    """The module cache (compiled once) and the model registry the probes share."""
    from edgeswarm.edge.policy import ModuleCache
    from edgeswarm.models import ModelRegistry, write_anomaly_model

    models = ModelRegistry()
    models.register_bytes("anomaly", write_anomaly_model())
    return ModuleCache(cache_dir=None), models


def import_probe() -> ImportProbe:
    """A fresh probe instance (its strings intact: random_fill may overwrite them), from
    the module compiled once; close its policy when done."""
    from edgeswarm.edge.policy import LocalSwarmState, WasmPolicy
    from tests.wasm_fixtures import EVERY_IMPORT_PROBE

    cache, models = _compiled()
    swarm, lane = LocalSwarmState(), RecordingLane()
    policy = WasmPolicy(EVERY_IMPORT_PROBE, cache=cache, swarm=swarm, models=models, heavy=lane)
    policy._context.step_agents = HEAVY_AGENTS  # as es_step sets it for the step's agents
    policy.call("probe_random_fill", 4096, PAGE - 4096)  # masks and inputs not all zeros
    return ImportProbe(policy, swarm, lane)


class _Args:
    """Reads i32/i64 arguments from fuzz bytes: a tag byte picks an interesting value, a
    small one (two bytes) or any (four bytes); runs out as ``None``."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def _take(self, count: int) -> bytes | None:
        if self.at + count > len(self.data):
            return None
        chunk = self.data[self.at : self.at + count]
        self.at += count
        return chunk

    def i32(self) -> int | None:
        tag = self._take(1)
        if tag is None:
            return None
        kind, pick = tag[0] % 4, tag[0] // 4
        if kind == 0:
            return signed(INTERESTING_I32[pick % len(INTERESTING_I32)])
        raw = self._take(2 if kind == 1 else 4)
        if raw is None:
            return None
        return signed(int.from_bytes(raw, "little"))

    def i64(self) -> int | None:
        raw = self._take(8)
        return None if raw is None else struct.unpack("<q", raw)[0]


def encode_i32(value: int) -> bytes:
    """The shortest :class:`_Args` encoding of ``value`` (its inverse)."""
    value &= 0xFFFF_FFFF
    if value in INTERESTING_I32:
        return bytes([4 * INTERESTING_I32.index(value)])
    if value < 1 << 16:
        return bytes([1]) + value.to_bytes(2, "little")
    return bytes([2]) + value.to_bytes(4, "little")


def encode_call(name: str, args: Sequence[int], delta: int = 0) -> bytes:
    """One call of :func:`host_imports`' input: ``name`` with its i32 ``args`` (and the
    i64 ``delta`` of ``counter_add``)."""
    out = bytes([IMPORT_CALLS.index(name)]) + b"".join(encode_i32(value) for value in args)
    return out + struct.pack("<q", delta) if name == "counter_add" else out


def _answer_in(result: Any, low: int, high: int) -> bool:
    """An integer answer in ``low..high``, or out of fuel (a price the guest pays)."""
    from edgeswarm.edge.policy import PolicyFuelExhausted

    if isinstance(result, PolicyFuelExhausted):
        return True
    return isinstance(result, int) and low <= result <= high


def _u(value: int) -> int:
    return value & 0xFFFF_FFFF


IMPORT_CALLS = (
    "log", "time_ns", "random_fill", "counter_add", "set_add", "flag_get", "model_dims",
    "model_infer", "heavy_request", "heavy_results",
)  # fmt: skip


ARITY = {"log": 3, "time_ns": 0, "random_fill": 2, "counter_add": 2, "set_add": 4,
         "flag_get": 2, "model_dims": 2, "model_infer": 5, "heavy_request": 6,
         "heavy_results": 7}  # fmt: skip
"""i32 arguments of each import (``counter_add`` has an i64 after its two)."""


def host_imports(data: bytes, probe: ImportProbe | None = None) -> None:
    """Calls to the "es" imports: byte ``k`` picks :data:`IMPORT_CALLS` ``[k % 10]``, then
    its arguments (:class:`_Args`); each call is checked as it returns. On a fresh probe
    unless one is given."""
    if probe is not None:
        _import_calls(data, probe)
        return
    probe = import_probe()
    try:
        _import_calls(data, probe)
    finally:
        probe.policy.close()


def _import_calls(data: bytes, probe: ImportProbe) -> None:
    from edgeswarm.edge.policy import PolicyFuelExhausted, PolicyTrap

    policy, size = probe.policy, probe.policy.memory_bytes
    args = _Args(data)
    for _ in range(32):
        pick = args._take(1)
        if pick is None:
            return
        name = IMPORT_CALLS[pick[0] % len(IMPORT_CALLS)]
        values = [args.i32() for _ in range(ARITY[name])]
        if name == "counter_add":
            values.append(args.i64())
        if any(value is None for value in values):
            return
        call: list[int] = [value for value in values if value is not None]
        trapped = (PolicyTrap, PolicyFuelExhausted)
        if name == "log":
            assert call_leaving_the_rest(policy, "probe_log", call) == 0
        elif name == "time_ns":
            assert call_leaving_the_rest(policy, "probe_time_ns", call) > 0
        elif name == "random_fill":
            ptr, length = call
            result = call_leaving_the_rest(
                policy, "probe_random_fill", call, [Span(ptr, _u(length))]
            )
            fits = _u(ptr) + _u(length) <= size and _u(length) <= 100_000
            assert result == 0 if fits else isinstance(result, trapped), (call, result)
        elif name in ("counter_add", "set_add", "flag_get"):
            before = probe.swarm.snapshot()
            result = call_leaving_the_rest(policy, f"probe_{name}", call)
            expected = {"counter_add": (0, -1), "set_add": (0, -1, -2), "flag_get": (0, 1, -1)}
            assert result in expected[name], (name, call, result)
            if result != 0 and name != "flag_get":
                assert probe.swarm.snapshot() == before, f"refused {name} changed the state"
        elif name == "model_dims":
            assert call_leaving_the_rest(policy, "probe_model_dims", call) in ((8 << 32) | 1, -1)
        elif name == "model_infer":
            source, n, target = call[2], call[3], call[4]
            rows = max(n, 0)
            result = call_leaving_the_rest(
                policy, "probe_model_infer", call, [Span(target, 4 * rows)]
            )
            assert _answer_in(result, -2, 0), (call, result)
            if result == 0 and n > 0:
                assert _u(target) + 4 * n <= size, call
                assert _u(source) + 32 * n <= size, call
        elif name == "heavy_request":
            mask, source, n, dim = call[2], call[3], call[4], call[5]
            probe.lane.last_request = None
            result = call_leaving_the_rest(policy, "probe_heavy_request", call)
            assert _answer_in(result, -2, min(max(n, 0), HEAVY_AGENTS)), (call, result)
            if isinstance(result, int) and result > 0:
                assert _u(mask) + n <= size, call
                assert _u(source) + 4 * n * dim <= size, call
                assert probe.lane.last_request is not None
                agents, rows = probe.lane.last_request
                assert agents.size == result
                assert int(agents.max()) < n
                assert rows.shape == (result, dim)
        else:
            index, status, out, cap, out_dim = call[2], call[3], call[4], call[5], call[6]
            cap_rows, width = max(cap, 0), max(out_dim, 0)
            spans = [Span(index, 4 * cap_rows), Span(status, 4 * cap_rows),
                     Span(out, 4 * cap_rows * width)]  # fmt: skip
            result = call_leaving_the_rest(policy, "probe_heavy_results", call, spans)
            assert _answer_in(result, -2, cap_rows), (call, result)
