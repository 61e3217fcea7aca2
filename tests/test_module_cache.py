"""The compiled-module cache: compile once, verified on-disk artifacts, rebuilt when bad."""

import logging
import os
import stat

import numpy as np
import pytest
import wasmtime

from edgeswarm.agents_wasm import module_path
from edgeswarm.edge import AgentTable, FlockingWorld
from edgeswarm.edge.policy import (
    ModuleCache,
    PolicyLoadError,
    WasmPolicy,
)
from edgeswarm.edge.policy.boids import boids_numpy
from edgeswarm.edge.policy.compiler import defined_functions
from edgeswarm.edge.policy.engine import REFUSED_FEATURES, EngineSettings
from edgeswarm.edge.policy.errors import PolicyCompileError
from edgeswarm.edge.policy.module_cache import CACHE_MAGIC, engine_fingerprint, shared_engine
from tests.hostile_modules import FEATURE_MODULES, compile_bomb


@pytest.fixture
def boids_bytes():
    return module_path("boids").read_bytes()


def assert_boids_correct(cache: ModuleCache) -> None:
    world = FlockingWorld(count=50, seed=1)
    table = AgentTable.create(count=50, obs_dim=8, state_dim=2, act_dim=2)
    world.sense(table)
    ref_state = np.zeros((50, 2), np.float32)
    ref_actions = np.zeros((50, 2), np.float32)
    with WasmPolicy(module_path("boids"), cache=cache) as policy:
        policy.step(table.observations, table.state, table.actions)
    boids_numpy(table.observations, ref_state, ref_actions)
    np.testing.assert_allclose(table.actions, ref_actions, rtol=1e-6, atol=1e-7)


def test_one_engine_per_process():
    assert ModuleCache(cache_dir=None).engine is shared_engine()
    assert ModuleCache.shared() is ModuleCache.shared()


def test_memory_hit_does_not_compile(boids_bytes):
    cache = ModuleCache(cache_dir=None)
    first = cache.load(boids_bytes)
    assert cache.load(boids_bytes) is first
    assert cache.stats.compiled == 1
    assert cache.stats.memory_hits == 1


def test_wat_and_its_binary_share_an_entry():
    cache = ModuleCache(cache_dir=None)
    text = b'(module (func (export "f")))'
    assert cache.load(text) is cache.load(bytes(wasmtime.wat2wasm(text.decode())))
    assert len(cache) == 1


def test_disk_entry_is_written_privately_and_hit_by_a_fresh_cache(tmp_path, boids_bytes):
    directory = tmp_path / "modules"
    writer = ModuleCache(cache_dir=directory)
    digest = writer.load(boids_bytes).digest
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    entry = writer.entry_path(digest)
    assert entry is not None
    assert entry.name == f"{digest}-{engine_fingerprint()}.cwasm"
    assert entry.read_bytes().startswith(CACHE_MAGIC)
    assert [p.name for p in directory.iterdir()] == [entry.name]  # no temporary files left

    reader = ModuleCache(cache_dir=directory)
    reader.load(boids_bytes)
    assert reader.stats.compiled == 0
    assert reader.stats.disk_hits == 1
    assert_boids_correct(reader)


def corrupt_flip(data):
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(corrupt_flip, id="flipped-byte"),
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: data[:20], id="truncated-header"),
        pytest.param(lambda data: b"XXXXXXXX" + data[8:], id="bad-magic"),
        pytest.param(lambda data: data[:8] + bytes(32) + data[40:], id="other-module"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_corrupt_disk_entry_is_deleted_rebuilt_and_never_run(tmp_path, caplog, boids_bytes, damage):
    directory = tmp_path / "modules"
    digest = ModuleCache(cache_dir=directory).load(boids_bytes).digest
    entry = ModuleCache(cache_dir=directory).entry_path(digest)
    assert entry is not None
    good = entry.read_bytes()
    entry.write_bytes(damage(good))

    cache = ModuleCache(cache_dir=directory)
    with caplog.at_level(logging.WARNING, logger="edgeswarm.edge"):
        cache.load(boids_bytes)
    assert cache.stats.disk_rejected == 1
    assert cache.stats.disk_hits == 0
    assert cache.stats.compiled == 1
    assert any("bad entry" in r.getMessage() for r in caplog.records)
    assert entry.read_bytes()[:72] == good[:72]  # rebuilt: same header (same module, digest)
    assert_boids_correct(cache)
    # and the rebuilt entry is good for the next process
    again = ModuleCache(cache_dir=directory)
    again.load(boids_bytes)
    assert again.stats.disk_hits == 1


def test_directory_not_private_is_refused(tmp_path, caplog, boids_bytes):
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o777)
    with caplog.at_level(logging.WARNING, logger="edgeswarm.edge"):
        cache = ModuleCache(cache_dir=directory)
    assert cache.cache_dir is None
    assert any("not private" in r.getMessage() for r in caplog.records)
    cache.load(boids_bytes)
    assert list(directory.iterdir()) == []


def test_no_directory_means_memory_only(boids_bytes):
    cache = ModuleCache(cache_dir=None)
    assert cache.entry_path("0" * 64) is None
    cache.load(boids_bytes)
    assert cache.stats.compiled == 1


def test_default_cache_is_memory_only(tmp_path, monkeypatch, boids_bytes):
    monkeypatch.setenv("HOME", str(tmp_path))
    cache = ModuleCache()
    assert cache.cache_dir is None
    cache.load(boids_bytes)
    assert list(tmp_path.iterdir()) == []  # nothing written under the home directory


def test_malformed_module_is_a_load_error_and_not_cached(tmp_path):
    cache = ModuleCache(cache_dir=tmp_path / "m")
    with pytest.raises(PolicyLoadError, match="invalid Wasm"):
        cache.load(b"\0asm\x01\0\0\0\xff")
    with pytest.raises(PolicyLoadError, match="not a Wasm binary or WAT"):
        cache.load(b"\xff\xfe not text")
    assert len(cache) == 0
    assert list((tmp_path / "m").iterdir()) == []


def test_compiling_happens_in_another_process(boids_bytes, monkeypatch):
    # wasmtime.Module(engine, bytes) is never called here: only deserialize is.
    def no_compile_here(*args, **kwargs):
        raise AssertionError("compiled in the edge process")

    monkeypatch.setattr(wasmtime, "Module", no_compile_here, raising=False)
    monkeypatch.setattr(
        no_compile_here, "deserialize", wasmtime._module.Module.deserialize, raising=False
    )
    cache = ModuleCache(cache_dir=None)
    cache.load(boids_bytes)
    assert cache.stats.compiled == 1


def test_refused_module_is_remembered_not_recompiled(monkeypatch):
    from edgeswarm.edge.policy import module_cache

    calls = []
    from edgeswarm.edge.policy.compiler import compile_in_worker as real

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module_cache, "compile_in_worker", counting)
    cache = ModuleCache(cache_dir=None)
    relaxed = FEATURE_MODULES["relaxed SIMD"]
    for _ in range(3):
        with pytest.raises(PolicyLoadError, match="relaxed SIMD"):
            cache.load(relaxed, name="retry")
    assert len(calls) == 1


def test_engine_settings_are_part_of_the_disk_fingerprint(tmp_path, boids_bytes):
    guarded = ModuleCache(cache_dir=tmp_path / "m")
    unguarded = ModuleCache(
        cache_dir=tmp_path / "m", settings=EngineSettings(epoch_interruption=False)
    )
    assert engine_fingerprint(guarded.settings) != engine_fingerprint(unguarded.settings)
    guarded.load(boids_bytes)
    unguarded.load(boids_bytes)
    assert len(list((tmp_path / "m").iterdir())) == 2
    assert unguarded.stats.compiled == 1  # not the other engine's artifact
    assert_boids_correct(unguarded)


def test_the_abi_feature_set_is_what_the_engine_accepts():
    # WebAssembly 2.0 loads; what ABI.md lists as refused does not, each by its own switch.
    for wat in (
        "(module (func (param i32) (result i32) (i32.extend8_s (local.get 0))))",
        "(module (func (param f32) (result i32) (i32.trunc_sat_f32_s (local.get 0))))",
        "(module (func (result i32 i32) (i32.const 1) (i32.const 2)))",
        "(module (memory 1) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 1))))",
        "(module (table 1 funcref) (func (result funcref) (ref.null func)))",
        "(module (func (result v128) (v128.const i32x4 0 0 0 0)))",
        "(module (global i32 (i32.add (i32.const 1) (i32.const 2))))",
    ):
        ModuleCache(cache_dir=None).load(wat.encode())
    assert set(REFUSED_FEATURES) == set(FEATURE_MODULES)  # the hostile suite tries each one


def test_function_count_is_read_from_section_headers():
    assert defined_functions(compile_bomb(1234)) == 1234
    assert defined_functions(bytes(wasmtime.wat2wasm("(module (func) (func))"))) == 2
    with pytest.raises(PolicyCompileError, match="runs past the end"):
        defined_functions(b"\0asm\x01\0\0\0\x03\x10\x01")
