"""The inference node's Open Inference Protocol v2 endpoint (KServe v2 REST) on aiohttp.

aiohttp because the node is an asyncio program already (its QUIC session to
the gateway runs on the same loop): one well-kept library gives the server
here and the client of the gateway's OIP forwarder, with no second event loop
or thread. Routes (``docs/operations.md``, "Inference node"):

=====  ==================================  =============================================
GET    ``/v2/health/live``                 200 ``{"live": true}``
GET    ``/v2/health/ready``                200 ``{"ready": true}`` once every model loaded
GET    ``/v2``                             server metadata (``binary_tensor_data``)
GET    ``/v2/models/{name}``               model metadata: FP32 input/output ``[-1, k]``
GET    ``/v2/models/{name}/ready``         200 ``{"name": ..., "ready": true}``
POST   ``/v2/models/{name}/infer``         inference; JSON or binary tensors
=====  ==================================  =============================================

Every error is a JSON ``{"error": "..."}`` with an HTTP error status, as the
protocol requires: 400 for a request the model cannot take (unknown model,
wrong tensor name, datatype, shape or byte length, malformed JSON), 413 for a
body beyond the node's limit, 503 when the node is overloaded, 404 for an
unknown path. A bad request never stops the node: it answers the next one.
Models are not versioned: a ``/versions/{v}`` URL is answered 400.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import numpy as np
from aiohttp import web
from numpy.typing import NDArray

from edgeswarm import __version__

from .errors import NodeOverloadedError, TensorError
from .metrics import NodeMetrics
from .oip import BINARY_EXTENSION, HEADER_LENGTH, encode_infer_response, parse_infer_request
from .runtime import ServedModel


class ServingNode(Protocol):
    """What the endpoint needs of the inference node (``node.InferenceNode``)."""

    @property
    def models(self) -> Mapping[str, ServedModel]: ...

    @property
    def metrics(self) -> NodeMetrics: ...

    @property
    def max_rows(self) -> int: ...

    async def infer(
        self, model_name: str, rows: NDArray[np.float32], *, protocol: str
    ) -> NDArray[np.float32]: ...


logger = logging.getLogger("edgeswarm.inference")

__all__ = ["ServingNode", "oip_app", "start_oip_server"]

_BYTES_PER_VALUE = 32
"""Room per input value in a JSON body when sizing the body limit."""
_NODE = web.AppKey("node", ServingNode)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (404, 405, 413) as OIP error objects."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason or "error")


def _model(request: web.Request) -> Any:
    node = request.app[_NODE]
    name = request.match_info["name"]
    if "version" in request.match_info:
        raise TensorError(f"model {name!r} has no versions; drop /versions/ from the URL")
    model = node.models.get(name)
    if model is None:
        raise TensorError(f"unknown model {name!r}; models: {', '.join(node.models)}")
    return model


def _guarded(handler: Handler) -> Handler:
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except TensorError as exc:  # a model or version this node does not serve
            return _error(400, str(exc))

    return run


async def _live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def _ready(request: web.Request) -> web.Response:
    return web.json_response({"ready": bool(request.app[_NODE].models)})


async def _server_metadata(request: web.Request) -> web.Response:
    return web.json_response(
        {"name": "edgeswarm", "version": __version__, "extensions": [BINARY_EXTENSION]}
    )


async def _model_metadata(request: web.Request) -> web.Response:
    model = _model(request)
    return web.json_response(
        {
            "name": model.name,
            "platform": model.platform,
            "inputs": [
                {"name": model.input_name, "datatype": "FP32", "shape": [-1, model.input_dim]}
            ],
            "outputs": [
                {"name": model.output_name, "datatype": "FP32", "shape": [-1, model.output_dim]}
            ],
        }
    )


async def _model_ready(request: web.Request) -> web.Response:
    model = _model(request)
    return web.json_response({"name": model.name, "ready": True})


async def _infer(request: web.Request) -> web.Response:
    node = request.app[_NODE]
    model = _model(request)
    limit = node.max_rows * model.input_dim * _BYTES_PER_VALUE + (1 << 20)
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"body of {request.content_length} bytes is over {limit}")
    body = await request.read()
    header = request.headers.get(HEADER_LENGTH)
    try:
        header_length = int(header) if header is not None else None
        call = parse_infer_request(
            body,
            header_length,
            input_name=model.input_name,
            input_dim=model.input_dim,
            output_name=model.output_name,
            max_rows=node.max_rows,
        )
    except (TensorError, ValueError) as exc:
        node.metrics.errors.labels(model.name, "oip", "tensor").inc()
        message = str(exc) if isinstance(exc, TensorError) else f"bad {HEADER_LENGTH}: {header!r}"
        logger.info("OIP request refused", extra={"model": model.name, "error": message})
        return _error(400, message)
    try:
        outputs = await node.infer(model.name, call.rows, protocol="oip")
    except TensorError as exc:  # counted by the node
        return _error(400, str(exc))
    except NodeOverloadedError as exc:
        return _error(503, str(exc))
    payload, headers = encode_infer_response(
        model_name=model.name,
        request_id=call.request_id,
        output_name=model.output_name,
        outputs=outputs,
        binary=call.binary_output,
    )
    return web.Response(body=payload, headers=headers)


def oip_app(node: ServingNode) -> web.Application:
    """The aiohttp application serving ``node``'s models."""
    app = web.Application(middlewares=[_json_errors], client_max_size=1 << 30)
    app[_NODE] = node
    g = _guarded
    app.add_routes(
        [
            web.get("/v2/health/live", _live),
            web.get("/v2/health/ready", _ready),
            web.get("/v2", _server_metadata),
            web.get("/v2/models/{name}", g(_model_metadata)),
            web.get("/v2/models/{name}/versions/{version}", g(_model_metadata)),
            web.get("/v2/models/{name}/ready", g(_model_ready)),
            web.get("/v2/models/{name}/versions/{version}/ready", g(_model_ready)),
            web.post("/v2/models/{name}/infer", g(_infer)),
            web.post("/v2/models/{name}/versions/{version}/infer", g(_infer)),
        ]
    )
    return app


async def start_oip_server(node: ServingNode, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (``await runner.cleanup()`` stops it) and the port."""
    runner = web.AppRunner(oip_app(node), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound = int(runner.addresses[0][1])
    return runner, bound
