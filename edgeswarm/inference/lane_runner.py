"""The gateway's heavy lane on asyncio: carries out what :class:`HeavyLane` decides.

:class:`LaneRunner` feeds the sans-I/O lane the gateway's events (an edge's
INFER_REQUEST, a node joining, answering or leaving, an edge's session
ending) with the time, arms one timer for :meth:`HeavyLane.wake_at`, and
carries out its actions: a :class:`~edgeswarm.inference.lane.Forward` goes to a
native node as an INFER_REQUEST whose ``request_id`` is the attempt id (the
node's INFER_RESULT names it back) or to an OIP endpoint as an HTTP call; an
:class:`~edgeswarm.inference.lane.Answer` goes to the edge as ACTIONS with the
request's ``request_id`` and ``status``. If sending to a node fails, the lane
hears it as a failed attempt (and retries elsewhere); if a batch fails, every
one of its requests is answered (STYLE.md 13).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Hashable, Iterable
from typing import Protocol

import numpy as np

from edgeswarm.wire import Actions, InferRequest, InferResult, InferStatus

from .errors import ForwardError
from .lane import Answer, Forward, HeavyLane, LaneConfig
from .metrics import LaneMetrics
from .oip_forwarder import OipEndpoint

logger = logging.getLogger("edgeswarm.gateway")

__all__ = ["LaneRunner", "NodeChannel", "ResultSink"]


class ResultSink(Protocol):
    """An edge's session at the gateway: where answers go."""

    def send_result(self, result: Actions) -> None:
        """Send a heavy-lane result (ACTIONS with ``request_id``) to the edge."""

    def __hash__(self) -> int:
        """Sessions are told apart by identity (the lane keys its requests by origin)."""
        ...


class NodeChannel(Protocol):
    """A native inference node's session at the gateway."""

    def send_batch(self, request: InferRequest) -> None:
        """Send a batch as INFER_REQUEST; raises ``ConnectionError`` when the session is gone."""

    def __hash__(self) -> int:
        """Sessions are told apart by identity (the pool keys its nodes by session)."""
        ...


class LaneRunner:
    """The heavy lane of a running gateway."""

    def __init__(
        self,
        config: LaneConfig,
        *,
        metrics: LaneMetrics | None = None,
        oip_routes: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.lane = HeavyLane(config)
        self.metrics = metrics
        self._routes = tuple(oip_routes)
        self._endpoints: dict[Hashable, OipEndpoint] = {}
        self._channels: dict[Hashable, NodeChannel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Register the configured OIP endpoints (call once the loop runs)."""
        now = time.monotonic()
        for model, url in self._routes:
            endpoint = OipEndpoint(url, model)
            self._endpoints[endpoint] = endpoint
            self.lane.node_up(endpoint, endpoint.name, [model], now)
        self._run()

    def stop(self) -> None:
        """Stop the timer and the calls in flight; close the OIP clients soon after."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._endpoints:
            closing = asyncio.get_running_loop().create_task(self.close())
            self._tasks.add(closing)
            closing.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Close the OIP endpoints' HTTP clients."""
        for endpoint in self._endpoints.values():
            await endpoint.close()

    # --- events -------------------------------------------------------------

    def submit(self, sink: ResultSink, request: InferRequest) -> None:
        if self.metrics is not None:
            self.metrics.requests.inc()
        self.lane.submit(sink, request, time.monotonic())
        self._run()

    def origin_gone(self, sink: ResultSink) -> None:
        self.lane.origin_gone(sink)
        self._run()

    def node_joined(self, channel: NodeChannel, name: str, models: Iterable[str]) -> None:
        self._channels[channel] = channel
        self.lane.node_up(channel, name, models, time.monotonic())
        logger.info("inference node joined", extra={"node": name, "models": list(models)})
        self._run()

    def node_left(self, channel: NodeChannel) -> None:
        if self._channels.pop(channel, None) is None:
            return
        node = self.lane.pool.get(channel)
        logger.info("inference node left", extra={"node": node.name if node else "?"})
        self.lane.node_down(channel, time.monotonic())
        self._run()

    def node_result(self, channel: NodeChannel, result: InferResult) -> None:
        now = time.monotonic()
        if result.status == InferStatus.OK:
            self.lane.attempt_answered(channel, result.request_id, result.outputs, now)
        else:
            retry = result.status != InferStatus.FAILED
            self.lane.attempt_failed(
                channel, result.request_id, now, result.message or "node failed", retry=retry
            )
        self._run()

    # --- carrying out ---------------------------------------------------------

    def _run(self) -> None:
        while (action := self.lane.next_action()) is not None:
            if isinstance(action, Forward):
                self._forward(action)
            else:
                self._answer(action)
        self._arm()

    def _forward(self, forward: Forward) -> None:
        batch = forward.batch
        if self.metrics is not None:
            self.metrics.batch_rows.observe(batch.rows)
            self.metrics.batch_requests.observe(len(batch.requests))
        endpoint = self._endpoints.get(forward.node)
        if endpoint is not None:
            task = asyncio.get_running_loop().create_task(self._call_oip(endpoint, forward))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        channel = self._channels.get(forward.node)
        remaining_ms = int((batch.deadline - time.monotonic()) * 1000)
        try:
            if channel is None:
                raise ConnectionError("node gone")
            channel.send_batch(
                InferRequest(
                    request_id=forward.attempt_id,
                    model=batch.model,
                    deadline_ms=min(max(1, remaining_ms), 600_000),
                    tick=0,
                    agent_ids=batch.agent_ids(),
                    inputs=batch.inputs(),
                )
            )
        except Exception as exc:  # whatever sending failed on, the batch is retried
            self._failed(forward, f"cannot send: {exc}", retry=True)

    async def _call_oip(self, endpoint: OipEndpoint, forward: Forward) -> None:
        try:
            outputs = await endpoint.infer(forward.batch.inputs())
        except ForwardError as exc:
            self._failed(forward, str(exc), retry=exc.retry)
        else:
            self.lane.attempt_answered(endpoint, forward.attempt_id, outputs, time.monotonic())
        self._run()

    def _failed(self, forward: Forward, message: str, *, retry: bool) -> None:
        node = self.lane.pool.get(forward.node)
        name = node.name if node is not None else "?"
        logger.warning("inference attempt failed", extra={"node": name, "error": message})
        self.lane.attempt_failed(
            forward.node, forward.attempt_id, time.monotonic(), message, retry=retry
        )

    def _answer(self, answer: Answer) -> None:
        if self.metrics is not None:
            self.metrics.answers.labels(answer.status.name).inc()
            self.metrics.latency.observe(answer.latency_s)
        sink = answer.origin
        assert hasattr(sink, "send_result")
        try:
            sink.send_result(
                Actions(
                    tick=0,
                    agent_ids=np.ascontiguousarray(answer.agent_ids, dtype=np.uint32),
                    actions=answer.outputs,
                    request_id=answer.request_id,
                    status=answer.status,
                )
            )
        except Exception as exc:  # the edge's session ended meanwhile: nobody to answer
            logger.info("heavy-lane answer not delivered", extra={"error": str(exc)})

    def _arm(self) -> None:
        wake = self.lane.wake_at()
        if self._timer is not None:
            if wake is not None and self._timer.when() <= wake + 1e-4:
                return
            self._timer.cancel()
            self._timer = None
        if wake is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, wake - time.monotonic())
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.lane.tick(time.monotonic())
        self._run()
        if self.metrics is not None:
            self.metrics.nodes.set(len(self.lane.pool))
