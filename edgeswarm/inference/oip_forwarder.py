"""The gateway's second forwarder kind: batches to an Open Inference Protocol v2 server.

Configured per model (``--infer-oip MODEL=URL``), so Triton, KServe or another
edgeswarm inference node can serve a model over HTTP instead of the native
protocol. Each batch is one binary ``POST {url}/v2/models/{model}/infer``; the
model's input and output names come from its metadata (``GET
{url}/v2/models/{model}``), read once. An HTTP 400 means the server refused
the rows (not retried: another server would refuse them too); a connection
error, a timeout or any other status fails the attempt and the lane retries it.
"""

from __future__ import annotations

import itertools

import aiohttp
import numpy as np
from numpy.typing import NDArray

from .errors import ForwardError
from .oip import HEADER_LENGTH, decode_infer_response, encode_infer_request

__all__ = ["OipEndpoint"]

_request_ids = itertools.count(1)


class OipEndpoint:
    """One model on one OIP v2 server."""

    def __init__(self, url: str, model: str, *, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._names: tuple[str, str] | None = None

    @property
    def name(self) -> str:
        return f"{self.url}/v2/models/{self.model}"

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _tensor_names(self) -> tuple[str, str]:
        if self._names is None:
            async with self._client().get(self.name) as response:
                if response.status != 200:
                    raise ForwardError(f"{self.name}: metadata answered {response.status}")
                meta = await response.json()
            try:
                self._names = (meta["inputs"][0]["name"], meta["outputs"][0]["name"])
            except (KeyError, IndexError, TypeError) as exc:
                raise ForwardError(f"{self.name}: metadata without tensors: {exc!r}") from exc
        return self._names

    async def infer(self, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        """The model's outputs for ``rows``; raises :class:`ForwardError`."""
        try:
            input_name, output_name = await self._tensor_names()
            body, headers = encode_infer_request(
                input_name=input_name,
                output_name=output_name,
                rows=rows,
                request_id=str(next(_request_ids)),
            )
            async with self._client().post(f"{self.name}/infer", data=body, headers=headers) as r:
                payload = await r.read()
                if r.status == 400:
                    raise ForwardError(f"{self.name}: {_message(payload)}", retry=False)
                if r.status != 200:
                    raise ForwardError(f"{self.name}: HTTP {r.status}: {_message(payload)}")
                header = r.headers.get(HEADER_LENGTH)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ForwardError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        return decode_infer_response(
            payload,
            int(header) if header is not None and header.isdigit() else None,
            output_name=output_name,
            rows=int(rows.shape[0]),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _message(payload: bytes) -> str:
    return payload[:300].decode("utf-8", "replace")
