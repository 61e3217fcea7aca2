import wasmtime

from edgeswarm.agents_wasm import build, module_names, module_path


def test_every_source_has_a_built_module():
    assert "boids" in module_names()
    for name in module_names():
        assert module_path(name).is_file(), f"{name}: run scripts/build-agents"


def test_rebuild_gives_identical_bytes():
    outputs = build.build_all()
    assert outputs, "no sources found"
    for path, wasm in outputs.items():
        assert path.read_bytes() == wasm, f"{path.name} is stale: run scripts/build-agents"


def test_build_is_deterministic_and_valid(tmp_path):
    first = build.build_all(build_dir=tmp_path)
    second = build.build_all(build_dir=tmp_path)
    assert first == second
    engine = wasmtime.Engine()
    for wasm in first.values():
        wasmtime.Module.validate(engine, wasm)


def test_check_mode_reports_stale_output(tmp_path, monkeypatch, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "tiny.wat").write_text("(module)")
    monkeypatch.setattr(build, "SOURCE_DIR", tmp_path / "src")
    monkeypatch.setattr(build, "BUILD_DIR", tmp_path / "build")
    assert build.main(["--check"]) == 1
    assert build.main([]) == 0
    assert (tmp_path / "build" / "tiny.wasm").read_bytes() == wasmtime.wat2wasm("(module)")
    assert build.main(["--check"]) == 0
