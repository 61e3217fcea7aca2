"""The agent modules build reproducibly and the committed binaries are current."""

from __future__ import annotations

import importlib.util
import re
import shutil

import pytest
import wasmtime

from edgeswarm.agents_wasm import build, example_names, hostile_names, module_names, module_path

ZIGLANG_PROBLEM = build.ziglang_problem()
needs_ziglang = pytest.mark.skipif(
    ZIGLANG_PROBLEM is not None,
    reason=f"cannot build the C agent modules here: {ZIGLANG_PROBLEM}",
)


def test_every_source_has_a_built_module():
    assert {"boids", "flocking", "mlp_controller", "anomaly"} <= set(example_names())
    assert hostile_names(), "no hostile fixtures"
    for name in module_names():
        assert module_path(name).is_file(), f"{name}: run scripts/build-agents"
    with pytest.raises(KeyError):
        module_path("no_such_module")


def test_committed_binaries_are_valid():
    engine = wasmtime.Engine()
    for name in module_names():
        wasmtime.Module.validate(engine, module_path(name).read_bytes())


@needs_ziglang
def test_build_check_passes(capsys):
    """``build --check``: every module rebuilt from source equals the committed bytes."""
    rc = build.main(["--check"])
    out, err = capsys.readouterr()
    assert rc == 0, f"stale agent modules (run scripts/build-agents):\n{err}"
    for name in module_names():
        assert f"up to date {name}.wasm" in out


@needs_ziglang
def test_build_is_deterministic(tmp_path):
    first = build.build_all(build_dir=tmp_path)
    second = build.build_all(build_dir=tmp_path)
    assert first == second
    assert {path.stem for path in first} == set(module_names())


@needs_ziglang
def test_c_build_does_not_depend_on_the_source_location(tmp_path):
    """Same bytes from a copy of the sources elsewhere (no paths in the binary)."""
    copy = tmp_path / "deeply" / "nested" / "src"
    shutil.copytree(build.SOURCE_DIR, copy)
    moved = build.build_all(source_dir=copy, build_dir=build.BUILD_DIR)
    assert moved == build.build_all(build_dir=build.BUILD_DIR)


@needs_ziglang
def test_c_compile_error_is_reported(tmp_path):
    (tmp_path / "broken.c").write_text("int es_step(void) { return }\n")
    with pytest.raises(build.BuildError, match=r"zig cc failed for broken\.c"):
        build.build_all(source_dir=tmp_path, build_dir=tmp_path / "build")


def test_missing_ziglang_gives_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "tiny.c").write_text("int x;\n")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "pip install ziglang==" in str(build.ziglang_problem())
    with pytest.raises(build.BuildError, match="ziglang"):
        build.compile_source(tmp_path / "tiny.c")


def test_duplicate_sources_are_refused(tmp_path):
    (tmp_path / "twice.c").write_text("")
    (tmp_path / "twice.wat").write_text("(module)")
    with pytest.raises(build.BuildError, match="twice"):
        build.sources(tmp_path)


def test_check_mode_reports_stale_missing_and_orphan_outputs(tmp_path, monkeypatch, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "tiny.wat").write_text("(module)")
    monkeypatch.setattr(build, "SOURCE_DIR", tmp_path / "src")
    monkeypatch.setattr(build, "BUILD_DIR", tmp_path / "build")
    assert build.main(["--check"]) == 1
    assert "missing    tiny.wasm" in capsys.readouterr().err
    assert build.main([]) == 0
    assert (tmp_path / "build" / "tiny.wasm").read_bytes() == wasmtime.wat2wasm("(module)")
    assert build.main(["--check"]) == 0
    (tmp_path / "build" / "tiny.wasm").write_bytes(b"stale bytes")
    (tmp_path / "build" / "gone.wasm").write_bytes(b"")
    capsys.readouterr()
    assert build.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "stale      tiny.wasm" in err
    assert "orphan     gone.wasm" in err
    assert build.main([]) == 0
    assert not (tmp_path / "build" / "gone.wasm").exists()
    assert build.main(["--check"]) == 0


@needs_ziglang
def test_abi_md_c_example_builds_with_the_documented_flags(tmp_path):
    """The complete C example and the build command in ABI.md stay true."""
    text = (build.PACKAGE_DIR / "ABI.md").read_text(encoding="utf-8")
    examples = [block for block in re.findall(r"```c\n(.*?)```", text, re.S) if "es_step" in block]
    example = next(block for block in examples if block.startswith('#include "edgeswarm.h"'))
    documented = re.search(r"```sh\n(.*?)```", text, re.S)
    assert documented is not None
    for flag in build.C_FLAGS:
        assert flag in documented.group(1), f"ABI.md build command lacks {flag}"
    (tmp_path / "double.c").write_text(example)
    wasm = build.compile_source(tmp_path / "double.c")
    module = wasmtime.Module(wasmtime.Engine(), wasm)
    assert {export.name for export in module.exports} == {
        "memory",
        "es_abi_version",
        "es_describe",
        "es_alloc",
        "es_init",
        "es_step",
    }
    assert [(imp.module, imp.name) for imp in module.imports] == [("es", "counter_add")]


@needs_ziglang
def test_abi_md_model_dims_example_builds(tmp_path):
    """The es_init that asks for a model's widths, from ABI.md, compiles as a policy."""
    text = (build.PACKAGE_DIR / "ABI.md").read_text(encoding="utf-8")
    snippet = next(
        block
        for block in re.findall(r"```c\n(.*?)```", text, re.S)
        if 'ES_MODEL_DIMS("anomaly")' in block
    )
    step = (
        "ES_EXPORT(es_step) int32_t es_step(int32_t n, const float *obs, float *state, "
        "float *act) { (void)n; (void)obs; (void)state; (void)act; return out_dim ? 0 : 1; }\n"
    )
    (tmp_path / "scorer.c").write_text('#include "edgeswarm.h"\n' + snippet + step)
    module = wasmtime.Module(wasmtime.Engine(), build.compile_source(tmp_path / "scorer.c"))
    assert [(imp.module, imp.name) for imp in module.imports] == [("es", "model_dims")]
