"""Real LiteRT interpreter on real .tflite files written by edgeswarm.models.tflite_writer."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeswarm.models import (
    ANOMALY_INPUT_DIM,
    LiteRTModel,
    ModelError,
    ModelInputError,
    ModelLoadError,
    ModelNotFound,
    ModelRegistry,
    anomaly_layers,
    anomaly_reference,
    mlp_reference_forward,
    write_anomaly_model,
    write_mlp_tflite,
)
from edgeswarm.models.tflite_writer import Layer

RTOL = 1e-5
ATOL = 1e-6
REPO = Path(__file__).resolve().parents[1]


def _layers(dims: list[int], seed: int = 0) -> list[Layer]:
    rng = np.random.default_rng(seed)
    out: list[Layer] = []
    for d_in, d_out in itertools.pairwise(dims):
        w = rng.normal(0.0, 1.0 / np.sqrt(d_in), (d_in, d_out)).astype(np.float32)
        b = rng.normal(0.0, 0.1, d_out).astype(np.float32)
        out.append((w, b))
    return out


def _x(n: int, d: int, seed: int = 1, scale: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, d)) * scale).astype(np.float32)


@pytest.fixture
def anomaly_path(tmp_path: Path) -> Path:
    path = tmp_path / "anomaly.tflite"
    write_anomaly_model(path)
    return path


def test_anomaly_model_matches_numpy_for_many_batch_sizes(anomaly_path: Path) -> None:
    with LiteRTModel.from_path(anomaly_path, num_threads=1) as model:
        assert (model.input_dim, model.output_dim) == (ANOMALY_INPUT_DIM, 1)
        for n in (1, 4096, 7, 7, 1, 300, 4096, 2):
            x = _x(n, ANOMALY_INPUT_DIM, seed=n, scale=3.0)
            y = model.predict(x)
            assert y.shape == (n, 1)
            assert y.dtype == np.float32
            np.testing.assert_allclose(y, anomaly_reference(x), rtol=RTOL, atol=ATOL)


def test_anomaly_scores_are_meaningful(anomaly_path: Path) -> None:
    x = np.zeros((3, ANOMALY_INPUT_DIM), dtype=np.float32)
    x[1, 2] = 6.0
    x[2, 5] = -6.0
    with LiteRTModel.from_path(anomaly_path) as model:
        y = model.predict(x)[:, 0]
    assert y[0] < 0.2
    assert y[1] > 0.9
    assert y[2] > 0.9


@pytest.mark.parametrize(
    ("act", "seed"), [("relu", 11), ("tanh", 12), ("linear", 13), ("sigmoid", 14)]
)
def test_every_activation_matches_numpy(tmp_path: Path, act: str, seed: int) -> None:
    layers = _layers([5, 12, 3], seed=seed)  # fixed: hash(str) changes from process to process
    acts = [act, act]
    path = tmp_path / f"{act}.tflite"
    write_mlp_tflite(layers, acts, path)
    with LiteRTModel.from_path(path) as model:
        for n in (1, 64, 4096, 1):
            x = _x(n, 5, seed=n)
            np.testing.assert_allclose(
                model.predict(x), mlp_reference_forward(layers, acts, x), rtol=RTOL, atol=ATOL
            )


def test_mixed_deep_mlp_from_bytes() -> None:
    layers = _layers([10, 32, 16, 8, 4], seed=3)
    acts = ["relu", "tanh", "sigmoid", "linear"]
    with LiteRTModel.from_bytes(write_mlp_tflite(layers, acts)) as model:
        x = _x(513, 10)
        np.testing.assert_allclose(
            model.predict(x), mlp_reference_forward(layers, acts, x), rtol=RTOL, atol=ATOL
        )


def test_predict_returns_a_copy(anomaly_path: Path) -> None:
    with LiteRTModel.from_path(anomaly_path) as model:
        x = _x(4, ANOMALY_INPUT_DIM)
        first = model.predict(x)
        first[:] = 123.0
        np.testing.assert_allclose(model.predict(x), anomaly_reference(x), rtol=RTOL, atol=ATOL)


def test_non_contiguous_input_is_accepted(anomaly_path: Path) -> None:
    with LiteRTModel.from_path(anomaly_path) as model:
        big = _x(20, 2 * ANOMALY_INPUT_DIM)
        x = big[::2, ::2]
        assert not x.flags.c_contiguous
        np.testing.assert_allclose(model.predict(x), anomaly_reference(x), rtol=RTOL, atol=ATOL)


def test_writer_is_deterministic(tmp_path: Path) -> None:
    a = write_anomaly_model(tmp_path / "a.tflite")
    b = write_anomaly_model(tmp_path / "b.tflite")
    assert a == b
    assert (tmp_path / "a.tflite").read_bytes() == (tmp_path / "b.tflite").read_bytes()
    assert a[4:8] == b"TFL3"
    layers = anomaly_layers()
    assert write_mlp_tflite(layers, ["relu", "sigmoid"]) == a
    w, bias = layers[0]
    changed = [(w.copy(), bias.copy()), layers[1]]
    changed[0][0][0, 0] += 1.0
    assert write_mlp_tflite(changed, ["relu", "sigmoid"]) != a


def test_writer_layout(tmp_path: Path) -> None:
    from ai_edge_litert import schema_py_generated as schema

    layers = _layers([4, 6, 2])
    data = write_mlp_tflite(layers, ["relu", "tanh"])
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sg = model.subgraphs[0]
    inp = sg.tensors[sg.inputs[0]]
    out = sg.tensors[sg.outputs[0]]
    assert inp.name == b"input"
    assert list(inp.shape) == [1, 4]
    assert list(inp.shapeSignature) == [-1, 4]
    assert out.name == b"output"
    codes = [model.operatorCodes[op.opcodeIndex].builtinCode for op in sg.operators]
    fc, tanh = schema.BuiltinOperator.FULLY_CONNECTED, schema.BuiltinOperator.TANH
    assert codes == [fc, fc, tanh]
    assert sg.operators[0].builtinOptions.fusedActivationFunction == (
        schema.ActivationFunctionType.RELU
    )
    assert sg.operators[0].builtinOptions.keepNumDims is False
    kernel = sg.tensors[sg.operators[0].inputs[1]]
    assert list(kernel.shape) == [6, 4]  # (out, in)
    offset = data.find(np.ascontiguousarray(layers[0][0].T, "<f4").tobytes())
    assert offset > 0
    assert offset % 16 == 0  # constant buffers are 16-byte aligned


@pytest.mark.parametrize(
    ("layers_acts", "exc"),
    [
        (([], []), ValueError),
        (([(np.zeros((2, 3), np.float32), np.zeros(3, np.float32))], ["gelu"]), ValueError),
        (([(np.zeros((2, 3), np.float64), np.zeros(3, np.float64))], ["relu"]), TypeError),
        (([(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))], ["relu"]), ValueError),
    ],
)
def test_writer_rejects_bad_layers(layers_acts: tuple[list[Layer], list[str]], exc: type) -> None:
    with pytest.raises(exc):
        write_mlp_tflite(*layers_acts)


def test_random_bytes_give_load_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(50):
        path = tmp_path / f"junk{i}.tflite"
        path.write_bytes(rng.bytes(int(rng.integers(0, 4096))))
        with pytest.raises(ModelLoadError):
            LiteRTModel.from_path(path)
    with pytest.raises(ModelLoadError):
        LiteRTModel.from_bytes(b"")


def test_truncated_file_gives_load_error(tmp_path: Path, anomaly_path: Path) -> None:
    data = anomaly_path.read_bytes()
    for cut in (0, 4, 8, 16, 100, len(data) // 2, len(data) - 16, len(data) - 1):
        path = tmp_path / f"trunc{cut}.tflite"
        path.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError):
            LiteRTModel.from_path(path)


def test_missing_file_gives_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        LiteRTModel.from_path(tmp_path / "nope.tflite")


def test_bit_flipped_models_never_crash_the_process(anomaly_path: Path) -> None:
    """Known LiteRT crashes (empty model vtable, op writing its own input) are pre-empted.

    Runs in a child so a native crash fails this test instead of killing pytest.
    """
    script = textwrap.dedent(
        f"""
        import numpy as np
        from edgeswarm.models import LiteRTModel, ModelError, ModelLoadError
        data = open({str(anomaly_path)!r}, "rb").read()
        rng = np.random.default_rng(2)
        for i in range(300):
            d = bytearray(data)
            for _ in range(int(rng.integers(1, 4))):
                d[int(rng.integers(0, len(d)))] ^= 1 << int(rng.integers(0, 8))
            try:
                with LiteRTModel.from_bytes(bytes(d)) as m:
                    m.predict(np.zeros((3, m.input_dim), np.float32))
            except ModelError:
                pass
        print("done")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "done" in proc.stdout


def test_op_writing_its_own_input_is_rejected() -> None:
    from ai_edge_litert import schema_py_generated as schema

    data = write_mlp_tflite(_layers([3, 2]), ["sigmoid"])
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    sg = model.subgraphs[0]
    sg.operators[-1].outputs = list(sg.operators[-1].inputs)
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelLoadError, match=r"never produced|writes invalid"):
        LiteRTModel.from_bytes(bytes(builder.Output()))


def test_model_without_subgraphs_is_rejected() -> None:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT()
    model.version = 3
    builder = flatbuffers.Builder(64)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelLoadError, match="no subgraphs"):
        LiteRTModel.from_bytes(bytes(builder.Output()))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 7), np.float32),
        np.zeros((4, 9), np.float32),
        np.zeros(8, np.float32),
        np.zeros((1, 4, 8), np.float32),
        np.zeros((0, 8), np.float32),
        np.zeros((4, 8), np.float64),
        np.zeros((4, 8), np.int32),
        [[0.0] * 8],
    ],
)
def test_bad_input_gives_input_error(anomaly_path: Path, bad: object) -> None:
    with LiteRTModel.from_path(anomaly_path) as model:
        with pytest.raises(ModelInputError):
            model.predict(bad)  # type: ignore[arg-type]
        # the model stays usable after a rejected input
        x = _x(3, ANOMALY_INPUT_DIM)
        np.testing.assert_allclose(model.predict(x), anomaly_reference(x), rtol=RTOL, atol=ATOL)


def test_closed_model_raises(anomaly_path: Path) -> None:
    model = LiteRTModel.from_path(anomaly_path)
    model.close()
    assert model.closed
    with pytest.raises(ModelError):
        model.predict(_x(1, ANOMALY_INPUT_DIM))


def test_num_threads_validation(anomaly_path: Path) -> None:
    with pytest.raises(ValueError, match="num_threads"):
        LiteRTModel.from_path(anomaly_path, num_threads=0)
    with LiteRTModel.from_path(anomaly_path, num_threads=2) as model:
        x = _x(64, ANOMALY_INPUT_DIM)
        np.testing.assert_allclose(model.predict(x), anomaly_reference(x), rtol=RTOL, atol=ATOL)


def test_registry(tmp_path: Path, anomaly_path: Path) -> None:
    layers = _layers([5, 4, 2])
    other = tmp_path / "other.tflite"
    write_mlp_tflite(layers, ["tanh", "linear"], other)
    with ModelRegistry(num_threads=1) as reg:
        reg.register_path("anomaly", anomaly_path)
        reg.register_bytes("other", other.read_bytes())
        assert reg.ids() == ["anomaly", "other"]
        assert "anomaly" in reg
        assert len(reg) == 2
        x = _x(9, ANOMALY_INPUT_DIM)
        np.testing.assert_allclose(
            reg.predict("anomaly", x), anomaly_reference(x), rtol=RTOL, atol=ATOL
        )
        x5 = _x(9, 5)
        np.testing.assert_allclose(
            reg.predict("other", x5),
            mlp_reference_forward(layers, ["tanh", "linear"], x5),
            rtol=RTOL,
            atol=ATOL,
        )
        with pytest.raises(ModelNotFound):
            reg.get("missing")
        with pytest.raises(ModelNotFound):
            reg.predict("missing", x)
        with pytest.raises(ValueError, match="already registered"):
            reg.register_path("anomaly", anomaly_path)
        old = reg.get("other")
        reg.register_path("other", anomaly_path, replace=True)
        assert old.closed
        with pytest.raises(ModelLoadError):
            reg.register_bytes("junk", b"\x00" * 64)
        assert "junk" not in reg
        reg.unregister("other")
        with pytest.raises(ModelNotFound):
            reg.unregister("other")
        model = reg.get("anomaly")
    assert model.closed
    assert reg.ids() == []


def test_error_hierarchy() -> None:
    for exc in (ModelLoadError, ModelNotFound, ModelInputError):
        assert issubclass(exc, ModelError)
    assert ModelNotFound("x").model_id == "x"
