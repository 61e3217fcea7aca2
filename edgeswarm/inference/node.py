"""The inference node: models on ONNX Runtime or LiteRT, served two ways.

* **Native**: the node connects to its gateway as role ``inference`` with the
  feature ``heavy`` and the names of its models in HELLO; the gateway sends
  batches as INFER_REQUEST, the node answers each with one INFER_RESULT
  (``OK`` with the outputs, ``FAILED`` when the rows do not fit the model,
  ``REJECTED`` when it is overloaded). It reconnects with backoff.
* **Open Inference Protocol v2** over HTTP (``oip_server.py``), so any OIP
  client (tritonclient, KServe's) can call it, and so can the gateway's OIP
  forwarder.

Both share one :meth:`InferenceNode.infer`: each model runs on its own worker
thread (one call at a time: a GPU or ORT's own intra-op threads do the
parallel work), the event loop stays free to read the next request, and at
most ``max_pending`` calls wait; more are refused at once (back-pressure).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgeswarm.client.address import GatewayAddress
from edgeswarm.client.errors import AuthRefusedError, SessionEndedError
from edgeswarm.client.reconnect import Backoff, Reconnect, open_session
from edgeswarm.client.session import GatewayClient
from edgeswarm.identity import load_or_create_key
from edgeswarm.telemetry import DaemonEndpoint, Probes
from edgeswarm.wire import (
    DEFAULT_MAX_BATCH_AGENTS,
    FEATURE_HEAVY,
    PROTOCOL_VERSION,
    Hello,
    InferRequest,
    InferResult,
    InferStatus,
    LocalProtocolError,
    Role,
    code_name,
)

from .errors import InferenceError, NodeOverloadedError, TensorError
from .metrics import NodeMetrics
from .oip_server import start_oip_server
from .runtime import Device, ServedModel, load_model

logger = logging.getLogger("edgeswarm.inference")

__all__ = ["InferenceNode", "NodeConfig"]

_NO_ROWS = np.zeros((0, 1), dtype=np.float32)


@dataclass(frozen=True, kw_only=True)
class NodeConfig:
    """Everything an inference node needs; built by the CLI, passed by keyword."""

    node_id: str = "infer-0"
    """Peer id at the gateway and name in logs."""
    models: tuple[Path, ...] = ()
    """Model files (``.onnx``, ``.tflite``), each served under its file stem."""
    device: Device = "auto"
    """``cuda``, ``cpu``, or ``auto`` (CUDA when onnxruntime-gpu sees a GPU)."""
    gateway: GatewayAddress | None = None
    """Gateway to enroll with and take batches from; None serves OIP only."""
    data_dir: Path = Path("var/infer")
    """Where the node keeps its key."""
    key_file: Path | None = None
    """The node's ed25519 key; ``data_dir/node.key``, created, if None."""
    join_token: str | None = None
    """Token for role ``inference`` (``edgeswarm keys issue --role inference``)."""
    http_host: str = "127.0.0.1"
    """Address of the OIP v2 HTTP endpoint."""
    http_port: int | None = 8000
    """Its port; 0 picks one; None turns OIP off."""
    metrics_host: str = "127.0.0.1"
    """Address of the Prometheus endpoint."""
    metrics_port: int | None = 9466
    """Its port; 0 picks one; None disables it."""
    max_rows: int = DEFAULT_MAX_BATCH_AGENTS
    """Largest number of rows one call may carry (OIP: 400 beyond)."""
    max_pending: int = 64
    """Calls that may wait for the models at once; beyond, refused (503 / REJECTED)."""


class InferenceNode:
    """A running node: ``await run()`` until ``stop()``."""

    def __init__(self, config: NodeConfig) -> None:
        if not config.models:
            raise ValueError("an inference node needs at least one model")
        self.config = config
        self.metrics = NodeMetrics()
        self.models: dict[str, ServedModel] = {}
        try:
            for path in config.models:
                model = load_model(path, device=config.device)
                if model.name in self.models:
                    raise InferenceError(f"two models named {model.name!r}: rename one file")
                self.models[model.name] = model
        except BaseException:
            self.close()
            raise
        self.metrics.models_loaded(list(self.models))
        self._workers = {name: ThreadPoolExecutor(1, f"model-{name}") for name in self.models}
        self._pending = 0
        self._stop = asyncio.Event()
        self.http_port: int | None = None
        self.metrics_port: int | None = None
        self.client: GatewayClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.probes = Probes()
        """``/healthz``, and ``/readyz``: the models are loaded once the node exists."""
        self.refused: AuthRefusedError | None = None
        """Set when the gateway refused this node for good (the node stops)."""

    @property
    def max_rows(self) -> int:
        """Largest number of rows one call may carry."""
        return self.config.max_rows

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        for model in self.models.values():
            model.close()
        for worker in getattr(self, "_workers", {}).values():
            worker.shutdown(wait=False, cancel_futures=True)

    # --- the one way a model is called ---------------------------------------

    async def infer(
        self, model_name: str, rows: NDArray[np.float32], *, protocol: str
    ) -> NDArray[np.float32]:
        """Run ``rows`` through ``model_name`` on its worker thread.

        Raises ``TensorError`` (unknown model, wrong width or dtype, too many
        rows) and :class:`NodeOverloadedError`; both are counted.
        """
        model = self.models.get(model_name)
        if model is None:
            self.metrics.errors.labels(model_name[:64], protocol, "tensor").inc()
            raise TensorError(f"no model {model_name!r} here; models: {', '.join(self.models)}")
        if rows.shape[0] > self.config.max_rows:
            self.metrics.errors.labels(model_name, protocol, "tensor").inc()
            raise TensorError(f"{rows.shape[0]} rows in one call, at most {self.config.max_rows}")
        if self._pending >= self.config.max_pending:
            self.metrics.errors.labels(model_name, protocol, "overloaded").inc()
            raise NodeOverloadedError(f"{self._pending} calls waiting; try again later")
        received = time.perf_counter()
        self._pending += 1
        self.metrics.pending.set(self._pending)
        try:
            started, outputs, finished = await asyncio.get_running_loop().run_in_executor(
                self._workers[model_name], _timed_predict, model, rows
            )
        except TensorError:
            self.metrics.errors.labels(model_name, protocol, "tensor").inc()
            raise
        except Exception as exc:  # the runtime failed on rows it accepted: the model's fault
            self.metrics.errors.labels(model_name, protocol, "model").inc()
            raise TensorError(f"model {model_name!r} failed: {exc}") from exc
        finally:
            self._pending -= 1
            self.metrics.pending.set(self._pending)
        self.metrics.batch_rows.labels(model_name, protocol).observe(rows.shape[0])
        self.metrics.queue_seconds.labels(model_name).observe(started - received)
        self.metrics.compute_seconds.labels(model_name).observe(finished - started)
        return outputs

    # --- process ----------------------------------------------------------

    async def run(self) -> None:
        """Serve until ``stop()``: OIP over HTTP, the native session, metrics."""
        config = self.config
        runner = None
        if config.http_port is not None:
            runner, self.http_port = await start_oip_server(
                self, config.http_host, config.http_port
            )
        endpoint = None
        if config.metrics_port is not None:
            try:
                endpoint = DaemonEndpoint(
                    self.metrics.registry,
                    self.probes,
                    host=config.metrics_host,
                    port=config.metrics_port,
                )
            except BaseException:
                if runner is not None:
                    await runner.cleanup()
                raise
            self.metrics_port = endpoint.port
        heartbeat = asyncio.create_task(self.probes.keep_beating())
        native = None
        if config.gateway is not None:
            native = asyncio.create_task(self._native(config.gateway))
        _emit(
            {
                "event": "listening",
                "node_id": config.node_id,
                "http_port": self.http_port,
                "metrics_port": self.metrics_port,
                "models": {
                    name: {
                        "platform": m.platform,
                        "device": m.device,
                        "inputs": m.input_dim,
                        "outputs": m.output_dim,
                    }
                    for name, m in self.models.items()
                },
            }
        )
        logger.info("inference node serving", extra={"node_id": config.node_id})
        try:
            await self._stop.wait()
        finally:
            heartbeat.cancel()
            if native is not None:
                native.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await native
            if runner is not None:
                await runner.cleanup()
            if endpoint is not None:
                endpoint.close()
            self.close()
        if self.refused is not None:
            raise self.refused

    async def _native(self, address: GatewayAddress) -> None:
        config = self.config
        key = load_or_create_key(config.key_file or config.data_dir / "node.key")
        hello = Hello(
            version=PROTOCOL_VERSION,
            role=Role.INFERENCE,
            peer_id=config.node_id,
            public_key=key.public_key,
            join_token=config.join_token,
            features=(FEATURE_HEAVY,),
            models=tuple(self.models),
        )
        reconnect = Reconnect(Backoff(), seed=None)
        while not self._stop.is_set():
            client = GatewayClient(hello, key)
            client.infer_handler = lambda request, c=client: self._spawn(c, request)
            self.client = client
            try:
                async with open_session(address, client) as (_, welcome):
                    reconnect.succeeded()
                    self.metrics.gateway_connected.set(1)
                    logger.info(
                        "connected to gateway",
                        extra={"gateway_id": welcome.gateway_id, "models": list(self.models)},
                    )
                    while client.closed_reason is None and not self._stop.is_set():
                        await client.wait_change()
                    client.close("node stopping")
            except AuthRefusedError as exc:  # asking again cannot help: stop, say why
                self.refused = exc
                logger.error(
                    "gateway refused this node; it stops",
                    extra={"code": code_name(exc.code), "error": str(exc)},
                )
                self._stop.set()
                return
            except (ConnectionError, OSError, TimeoutError, SessionEndedError) as exc:
                delay = reconnect.failed()
                logger.warning(
                    "gateway unreachable; retrying",
                    extra={"error": str(exc) or type(exc).__name__, "retry_in_s": round(delay, 3)},
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
            finally:
                self.metrics.gateway_connected.set(0)

    def _spawn(self, client: GatewayClient, request: InferRequest) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(client, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, client: GatewayClient, request: InferRequest) -> None:
        try:
            outputs = await self.infer(request.model, request.inputs, protocol="native")
            result = InferResult(
                request_id=request.request_id, status=InferStatus.OK, outputs=outputs
            )
        except NodeOverloadedError as exc:
            result = _refusal(request, InferStatus.REJECTED, str(exc))
        except TensorError as exc:
            result = _refusal(request, InferStatus.FAILED, str(exc))
        with contextlib.suppress(SessionEndedError):  # the gateway retries it elsewhere
            try:
                client.send_infer(result)
            except LocalProtocolError as exc:  # e.g. an output too large for one frame
                client.send_infer(_refusal(request, InferStatus.FAILED, str(exc)))


def _refusal(request: InferRequest, status: InferStatus, message: str) -> InferResult:
    return InferResult(
        request_id=request.request_id, status=status, outputs=_NO_ROWS, message=message
    )


def _timed_predict(
    model: ServedModel, rows: NDArray[np.float32]
) -> tuple[float, NDArray[np.float32], float]:
    started = time.perf_counter()
    outputs = model.predict(rows)
    return started, outputs, time.perf_counter()


def _emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()
