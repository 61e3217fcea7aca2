"""The gateway's heavy lane, sans-I/O: requests in, batches to nodes, results out.

A :class:`HeavyLane` owns a :class:`~edgeswarm.inference.batcher.Batcher` per
model and a :class:`~edgeswarm.inference.pool.NodePool`. It is fed what
happens (:meth:`submit`, :meth:`node_up`, :meth:`node_down`,
:meth:`attempt_answered`, :meth:`attempt_failed`, :meth:`origin_gone`) with
the time, and :meth:`tick` when :meth:`wake_at` comes; it hands out
:class:`Forward` (send this batch to that node) and :class:`Answer` (answer
that origin's request) from :meth:`next_action`. The asyncio adapter
(:mod:`edgeswarm.inference.lane_runner`) only carries them out.

Rules (every request gets exactly one :class:`Answer`):

1. A request is REJECTED at once when its origin already has
   ``infer_window`` unanswered, when no node serves its model, or when the
   model's queue is full (back-pressure: the edge hears it in the same turn).
2. Batches leave as the batcher cuts them, each to the node the pool picks;
   with no node free they wait in the queue (which then fills: rule 1).
3. Each attempt of a batch has an id (the ``request_id`` a node answers). An
   attempt that fails (error, node gone, no answer within
   ``attempt_timeout_s``) counts against the node's circuit; the batch is
   tried again on another node while it has ``max_attempts`` left and an
   unanswered request whose deadline has not passed. A node's answer to an
   earlier attempt still counts if the batch is open; answers to a batch
   already answered are dropped. A FAILED answer (the model refused the
   rows) is not retried: its requests are answered FAILED.
4. A request whose deadline passes before its result is answered TIMEOUT,
   whether it is queued or in flight; its batch goes on for the others.
5. When an origin goes away its requests are dropped unanswered (there is
   nobody to answer); they are counted in ``LaneCounters.abandoned``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgeswarm.wire import InferRequest, InferStatus

from .batcher import (
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_QUEUED_ROWS,
    DEFAULT_MAX_WAIT_S,
    Batch,
    Batcher,
    LaneRequest,
)
from .pool import (
    DEFAULT_COOLDOWN_S,
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_MAX_OUTSTANDING,
    NodePool,
    PooledNode,
)

__all__ = ["Answer", "Forward", "HeavyLane", "LaneConfig", "LaneCounters"]

_NO_ROWS = np.zeros((0, 1), dtype=np.float32)
_NO_IDS = np.zeros(0, dtype=np.uint32)


@dataclass(frozen=True, kw_only=True)
class LaneConfig:
    """Limits of the heavy lane; the gateway's configuration fills it."""

    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    """Rows per batch."""
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    """Longest a request waits for its batch to fill."""
    max_queued_rows: int = DEFAULT_MAX_QUEUED_ROWS
    """Rows one model's queue holds; beyond, requests are REJECTED."""
    infer_window: int = 256
    """Requests one edge session may have unanswered (announced in WELCOME)."""
    max_attempts: int = 3
    """Nodes one batch is tried on at most."""
    attempt_timeout_s: float = 0.25
    """A node that has not answered an attempt by then has failed it."""
    max_outstanding: int = DEFAULT_MAX_OUTSTANDING
    """Attempts one node may have in flight."""
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    """Failures in a row that open a node's circuit."""
    cooldown_s: float = DEFAULT_COOLDOWN_S
    """How long an open circuit keeps traffic away."""


@dataclass(frozen=True, eq=False)
class Forward:
    """Send ``batch`` to node ``node`` as attempt ``attempt_id``."""

    node: Hashable
    attempt_id: int
    batch: Batch
    retry: bool
    """Whether an earlier attempt of this batch failed."""


@dataclass(frozen=True, eq=False)
class Answer:
    """Answer ``origin``'s request ``request_id``."""

    origin: Hashable
    request_id: int
    status: InferStatus
    agent_ids: NDArray[np.uint32]
    """The request's agents when OK, else empty."""
    outputs: NDArray[np.float32]
    """One row per agent when OK, else shape (0, 1)."""
    latency_s: float
    """From receipt to this answer."""
    message: str = ""


@dataclass
class LaneCounters:
    """Totals since start (the gateway's metrics read them)."""

    requests: int = 0
    answered: dict[str, int] = field(default_factory=dict)
    """Answers by status name."""
    batches: int = 0
    retries: int = 0
    node_failures: int = 0
    circuits_opened: int = 0
    late_answers: int = 0
    """Node answers that came after their batch was answered (dropped)."""
    abandoned: int = 0
    foreign_answers: int = 0
    """Node answers to attempts sent to another node (ignored)."""


@dataclass(eq=False)
class _InFlight:
    batch: Batch
    open: dict[int, LaneRequest]
    """Requests of the batch not answered yet, by position."""
    tried: set[Hashable] = field(default_factory=set)
    attempts_made: int = 0
    live: set[int] = field(default_factory=set)
    """Attempt ids sent and not settled."""


@dataclass(eq=False)
class _Attempt:
    flight: _InFlight
    node: Hashable
    timeout_at: float
    timed_out: bool = False


_attempt_ids = itertools.count(1)


class HeavyLane:
    """The heavy lane of one gateway (rules in the module docstring)."""

    def __init__(self, config: LaneConfig | None = None) -> None:
        self.config = config or LaneConfig()
        c = self.config
        self.pool = NodePool(
            max_outstanding=c.max_outstanding,
            failure_threshold=c.failure_threshold,
            cooldown_s=c.cooldown_s,
        )
        self.counters = LaneCounters()
        self._batchers: dict[tuple[str, int], Batcher] = {}
        """By (model, row width): rows of another width never share a batch."""
        self._flights: list[_InFlight] = []
        self._retry: deque[_InFlight] = deque()
        self._attempts: dict[int, _Attempt] = {}
        self._unanswered: dict[Hashable, int] = {}
        self._actions: deque[Forward | Answer] = deque()
        self._stalled: set[Batcher] = set()
        """Batchers with a batch due that no node could take at the last dispatch."""

    # --- inspection ---------------------------------------------------------

    def queued_rows(self, model: str) -> int:
        """Rows of ``model`` waiting for a batch."""
        return sum(b.queued_rows for (name, _), b in self._batchers.items() if name == model)

    def unanswered(self, origin: Hashable) -> int:
        return self._unanswered.get(origin, 0)

    def next_action(self) -> Forward | Answer | None:
        return self._actions.popleft() if self._actions else None

    # --- requests -----------------------------------------------------------

    def submit(self, origin: Hashable, request: InferRequest, now: float) -> None:
        """An origin asks; rule 1 may answer it at once, else it queues."""
        self.counters.requests += 1
        lane_request = LaneRequest(
            origin=origin,
            request_id=request.request_id,
            model=request.model,
            agent_ids=request.agent_ids,
            inputs=request.inputs,
            received=now,
            deadline=now + request.deadline_ms / 1000,
        )
        if self._unanswered.get(origin, 0) >= self.config.infer_window:
            self._reject(lane_request, now, f"more than {self.config.infer_window} unanswered")
            return
        if not self.pool.serves(request.model):
            self._reject(lane_request, now, f"no inference node serves {request.model!r}")
            return
        key = (request.model, int(request.inputs.shape[1]))
        batcher = self._batchers.get(key)
        if batcher is None:
            c = self.config
            batcher = self._batchers[key] = Batcher(
                request.model,
                max_batch_rows=c.max_batch_rows,
                max_wait_s=c.max_wait_s,
                max_queued_rows=c.max_queued_rows,
            )
        if not batcher.add(lane_request):
            self._reject(lane_request, now, f"queue of {request.model!r} is full")
            return
        self._unanswered[origin] = self._unanswered.get(origin, 0) + 1
        self._dispatch(now)

    def origin_gone(self, origin: Hashable) -> None:
        """Rule 5."""
        dropped = 0
        for batcher in self._batchers.values():
            dropped += len(batcher.remove(origin))
        for flight in self._flights:
            for index in [i for i, r in flight.open.items() if r.origin == origin]:
                del flight.open[index]
                dropped += 1
        self._unanswered.pop(origin, None)
        self.counters.abandoned += dropped
        self._forget_answered()

    # --- nodes --------------------------------------------------------------

    def node_up(self, key: Hashable, name: str, models: Iterable[str], now: float) -> None:
        self.pool.add(key, name, models)
        self._dispatch(now)

    def node_down(self, key: Hashable, now: float) -> None:
        """The node is gone: its attempts failed (rule 3)."""
        for attempt_id, attempt in list(self._attempts.items()):
            if attempt.node == key:
                self._fail(attempt_id, now, "node went away", retry=True, count=False)
        self.pool.remove(key)
        self._dispatch(now)

    def attempt_answered(
        self, node: Hashable, attempt_id: int, outputs: NDArray[np.float32], now: float
    ) -> None:
        """``node`` answered attempt ``attempt_id`` with one output row per input row.

        An answer to an attempt sent to another node is ignored (a node answers
        only what it was asked).
        """
        if not self._owns(node, attempt_id):
            return
        attempt = self._attempts.pop(attempt_id, None)
        if attempt is None:
            self.counters.late_answers += 1
            return
        flight = attempt.flight
        flight.live.discard(attempt_id)
        node = self.pool.get(attempt.node)
        if node is not None and not attempt.timed_out:
            self.pool.succeeded(node)
        if not flight.open:
            self.counters.late_answers += 1
            self._dispatch(now)
            return
        try:
            parts = list(flight.batch.split(outputs))
        except ValueError as exc:
            self._attempts[attempt_id] = attempt  # let _fail settle it like any failure
            flight.live.add(attempt_id)
            self._fail(attempt_id, now, f"bad answer: {exc}", retry=True)
            return
        for index, (request, rows) in enumerate(parts):
            if flight.open.pop(index, None) is not None:
                self._answer(request, now, InferStatus.OK, rows)
        self._forget_answered()
        self._dispatch(now)

    def attempt_failed(
        self, node: Hashable, attempt_id: int, now: float, message: str, *, retry: bool
    ) -> None:
        """``node`` could not answer attempt ``attempt_id`` (``retry``: another node might)."""
        if self._owns(node, attempt_id):
            self._fail(attempt_id, now, message, retry=retry)
        self._dispatch(now)

    def _owns(self, node: Hashable, attempt_id: int) -> bool:
        attempt = self._attempts.get(attempt_id)
        if attempt is not None and attempt.node != node:
            self.counters.foreign_answers += 1
            return False
        return True

    # --- time ---------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Rule 4 and attempt timeouts; then whatever batches are due leave."""
        for batcher in self._batchers.values():
            for request in batcher.expire(now):
                self._answer(request, now, InferStatus.TIMEOUT, message="deadline passed queued")
        for flight in self._flights:
            for index, request in list(flight.open.items()):
                if request.deadline <= now:
                    del flight.open[index]
                    self._answer(request, now, InferStatus.TIMEOUT, message="deadline passed")
        for attempt_id, attempt in list(self._attempts.items()):
            if not attempt.timed_out and attempt.timeout_at <= now:
                self._fail(attempt_id, now, "no answer in time", retry=True, keep=True)
        self._forget_answered()
        self._dispatch(now)

    def wake_at(self) -> float | None:
        """When :meth:`tick` must run next (None: nothing pending)."""
        # A due batch that no node could take waits for a node's answer (or a node,
        # or a circuit's cooldown), not for the clock: waking for it would spin.
        times = [
            t
            for b in self._batchers.values()
            if (t := b.earliest_deadline() if b in self._stalled else b.wake_at()) is not None
        ]
        times += [r.deadline for f in self._flights for r in f.open.values()]
        times += [a.timeout_at for a in self._attempts.values() if not a.timed_out]
        waiting = self._retry or any(len(b) for b in self._batchers.values())
        if waiting and (circuit := self.pool.wake_at()) is not None:
            times.append(circuit)
        return min(times) if times else None

    # --- internals ------------------------------------------------------------

    def _dispatch(self, now: float) -> None:
        self._forget_answered()
        while self._retry:
            flight = self._retry[0]
            if not flight.open:
                self._retry.popleft()
                continue
            node = self._pick(flight, now)
            if node is None:
                break
            self._retry.popleft()
            self._send(flight, node, now, retry=True)
        self._stalled.clear()
        for (model, _), batcher in self._batchers.items():
            while batcher.ready(now):
                node = self.pool.pick(model, now)
                if node is None:
                    self._stalled.add(batcher)
                    break
                batch = batcher.take(now)
                assert batch is not None
                flight = _InFlight(batch=batch, open=dict(enumerate(batch.requests)))
                self._flights.append(flight)
                self.counters.batches += 1
                self._send(flight, node, now, retry=False)

    def _pick(self, flight: _InFlight, now: float) -> PooledNode | None:
        model = flight.batch.model
        node = self.pool.pick(model, now, exclude=frozenset(flight.tried))
        if node is None and flight.tried:
            untried = any(
                model in n.models and n.key not in flight.tried for n in self.pool.nodes()
            )
            if not untried:  # every node was tried: any of them may take the retry
                node = self.pool.pick(model, now)
        return node

    def _send(self, flight: _InFlight, node: PooledNode, now: float, *, retry: bool) -> None:
        attempt_id = next(_attempt_ids)
        self._attempts[attempt_id] = _Attempt(
            flight=flight, node=node.key, timeout_at=now + self.config.attempt_timeout_s
        )
        flight.live.add(attempt_id)
        flight.tried.add(node.key)
        flight.attempts_made += 1
        self.pool.sent(node, now)
        if retry:
            self.counters.retries += 1
        self._actions.append(
            Forward(node=node.key, attempt_id=attempt_id, batch=flight.batch, retry=retry)
        )

    def _fail(
        self,
        attempt_id: int,
        now: float,
        message: str,
        *,
        retry: bool,
        count: bool = True,
        keep: bool = False,
    ) -> None:
        """Settle a failed attempt; retry its batch or answer its open requests FAILED.

        ``keep``: the attempt timed out but stays known, so a late answer is still used.
        """
        attempt = self._attempts.get(attempt_id)
        if attempt is None or attempt.timed_out:
            if attempt is not None and not keep:
                del self._attempts[attempt_id]
                attempt.flight.live.discard(attempt_id)
            return
        if keep:
            attempt.timed_out = True
        else:
            del self._attempts[attempt_id]
            attempt.flight.live.discard(attempt_id)
        node = self.pool.get(attempt.node)
        if node is not None:
            self.counters.node_failures += 1
            if count and self.pool.failed(node, now):
                self.counters.circuits_opened += 1
            elif not count:
                self.pool.settle(node)
        flight = attempt.flight
        if not flight.open:
            return
        live_elsewhere = any(not self._attempts[a].timed_out for a in flight.live)
        if live_elsewhere or flight in self._retry:
            return
        if (
            retry
            and flight.attempts_made < self.config.max_attempts
            and any(request.deadline > now for request in flight.open.values())
        ):
            self._retry.append(flight)
            return
        status = InferStatus.FAILED
        for index, request in list(flight.open.items()):
            del flight.open[index]
            self._answer(request, now, status, message=message)

    def _reject(self, request: LaneRequest, now: float, message: str) -> None:
        self._answer(request, now, InferStatus.REJECTED, message=message, counted=False)

    def _answer(
        self,
        request: LaneRequest,
        now: float,
        status: InferStatus,
        outputs: NDArray[np.float32] | None = None,
        *,
        message: str = "",
        counted: bool = True,
    ) -> None:
        if counted:
            left = self._unanswered.get(request.origin, 0) - 1
            if left > 0:
                self._unanswered[request.origin] = left
            else:
                self._unanswered.pop(request.origin, None)
        ok = status is InferStatus.OK and outputs is not None
        self.counters.answered[status.name] = self.counters.answered.get(status.name, 0) + 1
        self._actions.append(
            Answer(
                origin=request.origin,
                request_id=request.request_id,
                status=status,
                agent_ids=request.agent_ids if ok else _NO_IDS,
                outputs=outputs if ok and outputs is not None else _NO_ROWS,
                latency_s=now - request.received,
                message=message,
            )
        )

    def _forget_answered(self) -> None:
        """Drop batches every request of which is answered (their attempts may still return)."""
        if any(not flight.open for flight in self._flights):
            self._flights = [flight for flight in self._flights if flight.open]
