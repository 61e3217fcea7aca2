"""The heavy lane with real processes: inference nodes, a gateway, OIP v2 clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgeswarm.inference.errors import ModelUnavailableError, TensorError
from edgeswarm.inference.runtime import cuda_available, load_model
from edgeswarm.models import triage_reference, write_triage_onnx, write_triage_tflite
from edgeswarm.wire import InferStatus

from .conftest import RunningGateway, start_gateway, stop_process
from .heavy_peers import RunningNode, heavy_edge, start_node, wait_for_nodes

pytestmark = pytest.mark.integration

NO_GPU = "no CUDA execution provider here (onnxruntime-gpu and a GPU): CI has no GPU"


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path]:
    onnx_file, tflite_file = tmp_path / "triage.onnx", tmp_path / "triage_lite.tflite"
    write_triage_onnx(onnx_file)
    write_triage_tflite(tflite_file)
    return onnx_file, tflite_file


@pytest.fixture
def node(tmp_path: Path, models: tuple[Path, Path]) -> Iterator[RunningNode]:
    running = start_node(tmp_path, list(models))
    try:
        yield running
    finally:
        stop_process(running.process)


def rows(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 2.0, (n, 8)).astype(np.float32)


# --- models ------------------------------------------------------------------


@pytest.mark.parametrize("which", [0, 1], ids=["onnx", "tflite"])
def test_both_formats_equal_the_numpy_reference(models: tuple[Path, Path], which: int) -> None:
    model = load_model(models[which], device="cpu")
    x = rows(700)
    out = model.predict(x)
    assert out.shape == (700, 2)
    np.testing.assert_allclose(out, triage_reference(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(TensorError):
        model.predict(x[:, :7].copy())


@pytest.mark.skipif(cuda_available(), reason="this machine has the CUDA provider")
def test_cuda_is_refused_where_there_is_none(models: tuple[Path, Path]) -> None:
    with pytest.raises(ModelUnavailableError, match="cuda"):
        load_model(models[0], device="cuda")
    assert load_model(models[0], device="auto").device == "cpu"


@pytest.mark.skipif(not cuda_available(), reason=NO_GPU)
def test_cuda_provider_equals_the_reference(models: tuple[Path, Path]) -> None:
    model = load_model(models[0], device="cuda")
    assert model.device == "cuda"
    x = rows(4096)
    np.testing.assert_allclose(model.predict(x), triage_reference(x), rtol=1e-4, atol=1e-5)


# --- OIP v2 ----------------------------------------------------------------


def test_tritonclient_calls_our_oip_endpoint(node: RunningNode) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=f"127.0.0.1:{node.http_port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("triage")
        meta = client.get_model_metadata("triage")
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        x = rows(37, seed=1)
        for name in ("triage", "triage_lite"):
            for binary in (True, False):
                tensor = triton.InferInput("input", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x, binary_data=binary)
                wanted = triton.InferRequestedOutput("output", binary_data=binary)
                result = client.infer(name, [tensor], outputs=[wanted], request_id="r-7")
                assert result.get_response()["id"] == "r-7"
                np.testing.assert_allclose(
                    result.as_numpy("output"), triage_reference(x), rtol=1e-5, atol=1e-6
                )
    finally:
        client.close()


def _post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_bad_tensors_get_an_oip_error_and_the_node_keeps_serving(node: RunningNode) -> None:
    url = f"{node.url}/v2/models/triage/infer"

    def body(**tensor: object) -> bytes:
        base: dict[str, object] = {
            "name": "input",
            "shape": [1, 8],
            "datatype": "FP32",
            "data": [0.5] * 8,
        }
        base.update(tensor)
        return json.dumps({"inputs": [base]}).encode()

    bad = [
        body(shape=[1, 7], data=[0.5] * 7),  # wrong width
        body(datatype="INT64"),
        body(name="nope"),
        body(data=[0.5] * 5),  # fewer values than the shape says
        body(data=["x"] * 8),
        body(shape=[70_000, 8], data=[]),  # more rows than the node takes
        b"{not json",
        b"[" * 100_000 + b"]" * 100_000,  # nested too deeply
        json.dumps({"inputs": []}).encode(),
    ]
    for payload in bad:
        status, answer = _post(url, payload)
        assert status == 400, answer
        assert isinstance(answer["error"], str)
        assert answer["error"]
    raw = np.ones((2, 8), "<f4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [2, 8],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 60},  # lies about the size
                }
            ]
        }
    ).encode()
    status, answer = _post(url, head + raw, {"Inference-Header-Content-Length": str(len(head))})
    assert status == 400
    assert "binary_data_size" in answer["error"]
    oversize = b"0" * (65_536 * 8 * 32 + (1 << 20) + 1)
    status, answer = _post(url, oversize)
    assert status == 413
    status, answer = _post(f"{node.url}/v2/models/unknown/infer", body())
    assert status == 400
    assert "unknown model" in answer["error"]
    status, answer = _post(url, body())  # and the next good request is served
    assert status == 200
    np.testing.assert_allclose(
        np.asarray(answer["outputs"][0]["data"], np.float32),
        triage_reference(np.full((1, 8), 0.5, np.float32))[0],
        rtol=1e-5,
    )
    assert node.process.poll() is None


# --- through the gateway -------------------------------------------------------


async def _ask_and_check(gateway: RunningGateway, count: int, *, model: str = "triage") -> None:
    async with heavy_edge(gateway) as edge:
        asked = {edge.ask(x, model=model): x for x in (rows(i % 40 + 1, i) for i in range(count))}
        await edge.wait_answered(set(asked))
        for request_id, x in asked.items():
            [answer] = edge.answers[request_id]
            assert answer.status == InferStatus.OK
            np.testing.assert_allclose(answer.actions, triage_reference(x), rtol=1e-5, atol=1e-6)
            assert answer.agent_ids[0] == 1000 * request_id


def test_edges_requests_are_batched_through_a_native_node(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    gateway = start_gateway(tmp_path / "gateway")
    node = start_node(tmp_path, list(models), gateway=gateway)
    try:
        wait_for_nodes(gateway, 1)
        asyncio.run(_ask_and_check(gateway, 60))
        asyncio.run(_ask_and_check(gateway, 10, model="triage_lite"))
    finally:
        stop_process(node.process)
        stop_process(gateway.process)


def test_our_oip_forwarder_drives_our_node_over_http(tmp_path: Path, node: RunningNode) -> None:
    gateway = start_gateway(tmp_path / "gateway", "--infer-oip", f"triage={node.url}")
    try:
        asyncio.run(_ask_and_check(gateway, 30))
    finally:
        stop_process(gateway.process)
    assert '"protocol":"native"' not in node.log.read_text()


def test_one_of_two_nodes_killed_mid_run_every_request_answered_once(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    gateway = start_gateway(tmp_path / "gateway")
    nodes = [
        start_node(tmp_path, [models[0]], node_id=f"node-{i}", gateway=gateway) for i in range(2)
    ]
    try:
        wait_for_nodes(gateway, 2)

        async def run() -> None:
            async with heavy_edge(gateway) as edge:
                asked: dict[int, np.ndarray] = {}
                for i in range(300):
                    x = rows(i % 20 + 1, i)
                    asked[edge.ask(x, deadline_ms=5000)] = x
                    if i == 100:
                        nodes[0].process.send_signal(signal.SIGKILL)  # mid-run, no goodbye
                    if i % 10 == 0:
                        await asyncio.sleep(0.01)
                await edge.wait_answered(set(asked), timeout=30)
                await asyncio.sleep(0.3)  # a duplicate would arrive by now
                edge.collect()
                assert sorted(edge.answers) == sorted(asked)
                for request_id, x in asked.items():
                    [answer] = edge.answers[request_id]  # exactly one
                    assert answer.status == InferStatus.OK, answer
                    np.testing.assert_allclose(
                        answer.actions, triage_reference(x), rtol=1e-5, atol=1e-6
                    )

        asyncio.run(run())
        assert nodes[0].process.wait(5) == -signal.SIGKILL
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{gateway.metrics_port}/metrics")
        series = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in scraped.read().decode().splitlines()
            if line.startswith("edgeswarm_gateway_infer_")
        }
        assert series["edgeswarm_gateway_infer_node_failures_total"] >= 1  # the kill was seen
        assert series["edgeswarm_gateway_infer_retries_total"] >= 1
    finally:
        for node in nodes:
            stop_process(node.process)
        stop_process(gateway.process)


def test_an_expired_deadline_is_an_explicit_timeout(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    gateway = start_gateway(tmp_path / "gateway")
    node = start_node(tmp_path, [models[0]], gateway=gateway)
    try:
        wait_for_nodes(gateway, 1)
        os.kill(node.process.pid, signal.SIGSTOP)  # the node hangs: no answer, no goodbye

        async def run() -> None:
            async with heavy_edge(gateway) as edge:
                request_id = edge.ask(rows(3), deadline_ms=300)
                await edge.wait_answered({request_id}, timeout=10)
                [answer] = edge.answers[request_id]
                assert answer.status == InferStatus.TIMEOUT
                assert answer.actions.shape == (0, 1)

        asyncio.run(run())
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
        stop_process(node.process)
        stop_process(gateway.process)


def _escalating_edge(gateway: RunningGateway, tmp_path: Path, ticks: int) -> dict[str, Any]:
    from edgeswarm.models import write_anomaly_model

    from .test_integration import run_edge, summary_of

    write_anomaly_model(tmp_path / "anomaly.tflite")
    edge = run_edge(
        gateway,
        "edge-h",
        agents=2000,
        ticks=ticks,
        tick_hz=10,
        extra=("--policy", "escalate", "--model", str(tmp_path / "anomaly.tflite")),
    )
    return summary_of(edge, timeout=60)


def test_an_edge_policy_escalates_and_reads_results_or_explicit_timeouts(
    tmp_path: Path, models: tuple[Path, Path]
) -> None:
    gateway = start_gateway(tmp_path / "gateway")
    node = start_node(tmp_path, [models[0]], gateway=gateway)
    try:
        wait_for_nodes(gateway, 1)
        summary = _escalating_edge(gateway, tmp_path, ticks=30)
        results = summary["heavy_results"]
        assert isinstance(results, dict)
        assert summary["heavy_rows"] > 0
        # every asked agent was answered once, or its request was still out at the stop
        answered = sum(results.values())
        assert answered + summary["heavy_outstanding_rows"] == summary["heavy_rows"]
        assert results.get("OK", 0) > answered / 2  # TIMEOUTs only when the machine lags
        assert results.get("FAILED", 0) == 0
        assert summary["policies_quarantined"] == 0
        os.kill(node.process.pid, signal.SIGSTOP)  # the node hangs: the deadline passes
        summary = _escalating_edge(gateway, tmp_path, ticks=20)
        results = summary["heavy_results"]
        assert isinstance(results, dict)
        assert results.get("TIMEOUT", 0) > 0
        assert results.get("OK", 0) == 0
        assert sum(results.values()) + summary["heavy_outstanding_rows"] == summary["heavy_rows"]
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
        stop_process(node.process)
        stop_process(gateway.process)
