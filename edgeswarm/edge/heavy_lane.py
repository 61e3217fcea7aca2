"""An edge's side of the heavy lane: its policies' requests out, their results back.

:class:`HeavyRequests` is the :class:`~edgeswarm.edge.policy.heavy.HeavyLaneSeam`
the policies' ``heavy_request`` / ``heavy_results`` imports use. Per tick:

1. before the policies step, :meth:`HeavyRequests.receive` files the results
   the gateway sent (ACTIONS with a ``request_id``) into per-(policy, model)
   inboxes, and answers TIMEOUT itself for every request whose deadline plus
   ``grace_s`` has passed without a result (a lost datagram, a gateway gone):
   every request gets exactly one result, and a result that comes later is
   dropped and counted;
2. during the step a policy's ``heavy_request`` queues rows
   (:meth:`request`) and its ``heavy_results`` takes from its inbox
   (:meth:`results`);
3. after the step :meth:`send` turns the queued rows into one INFER_REQUEST
   per (policy, model), with the agents' ids, a ``request_id`` and
   ``deadline_ms``, when the session speaks ``heavy`` and WELCOME's
   ``infer_window`` has room; otherwise those agents get REJECTED in their
   inbox at once.

So a request made at tick t is answered by the step of tick t + k, where k is
1 when the result arrives within the tick, and at most
``ceil((deadline_ms / 1000 + grace_s) * tick_hz)``: 1 at the defaults (50 ms
+ 25 ms at 10 Hz). Inboxes are bounded (``max_inbox_rows`` per policy and
model): past it the oldest results are dropped and counted.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from edgeswarm.client.session import GatewayClient
from edgeswarm.telemetry import LatencyHistogram
from edgeswarm.wire import FEATURE_HEAVY, Actions, InferRequest, InferStatus

from .agent_table import AgentTable

logger = logging.getLogger("edgeswarm.edge")

__all__ = ["DEFAULT_GRACE_S", "DEFAULT_HEAVY_DEADLINE_MS", "HeavyCounters", "HeavyRequests"]

DEFAULT_HEAVY_DEADLINE_MS = 50
"""How long the gateway has to answer a request, unless configured otherwise."""
DEFAULT_GRACE_S = 0.025
"""How long past the deadline the edge waits for the gateway's own answer before it
answers TIMEOUT itself."""


@dataclass
class HeavyCounters:
    """Totals of this edge's heavy lane."""

    requests: int = 0
    """INFER_REQUESTs sent."""
    rows: int = 0
    """Agents the policies asked for (sent, or answered REJECTED at once)."""
    results: dict[str, int] = field(default_factory=dict)
    """Agents answered, by status name (edge-made TIMEOUT and REJECTED included)."""
    expired_locally: int = 0
    """Requests the edge answered TIMEOUT itself (no result by deadline + grace)."""
    late_results: int = 0
    """Results for requests already answered (dropped)."""
    inbox_dropped: int = 0
    """Results dropped because a policy left its inbox full."""


@dataclass(eq=False)
class _Sent:
    slot: int
    model: str
    agents: NDArray[np.int32]
    agent_ids: NDArray[np.uint32]
    sent: float
    expires: float


@dataclass(eq=False)
class _Inbox:
    agents: deque[NDArray[np.int32]] = field(default_factory=deque)
    statuses: deque[NDArray[np.int32]] = field(default_factory=deque)
    outputs: deque[NDArray[np.float32] | None] = field(default_factory=deque)
    rows: int = 0


class HeavyRequests:
    """The heavy lane of one edge (rules in the module docstring)."""

    def __init__(
        self,
        *,
        deadline_ms: int = DEFAULT_HEAVY_DEADLINE_MS,
        grace_s: float = DEFAULT_GRACE_S,
        max_inbox_rows: int = 65_536,
    ) -> None:
        self.deadline_ms = deadline_ms
        self.grace_s = grace_s
        self.max_inbox_rows = max_inbox_rows
        self.counters = HeavyCounters()
        self.latency = LatencyHistogram()
        """From sending a request to its result's arrival (edge-made timeouts: to filing)."""
        self._queued: list[tuple[int, str, NDArray[np.int32], NDArray[np.float32]]] = []
        self._sent: dict[int, _Sent] = {}
        self._inboxes: dict[tuple[int, str], _Inbox] = {}
        self._next_id = 0

    @property
    def outstanding(self) -> int:
        """Requests sent and not answered."""
        return len(self._sent)

    @property
    def outstanding_rows(self) -> int:
        """Agents asked for and not answered yet (each gets its result on a later tick)."""
        return sum(int(sent.agents.shape[0]) for sent in self._sent.values())

    # --- the policies' seam ------------------------------------------------------

    def request(
        self, slot: int, model: str, agents: NDArray[np.int32], rows: NDArray[np.float32]
    ) -> int:
        self._queued.append((slot, model, agents, rows))
        return int(agents.shape[0])

    def results(
        self, slot: int, model: str, cap: int, out_dim: int
    ) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.float32]]:
        inbox = self._inboxes.get((slot, model))
        agents: list[NDArray[np.int32]] = []
        statuses: list[NDArray[np.int32]] = []
        outputs: list[NDArray[np.float32]] = []
        taken = 0
        while inbox is not None and inbox.agents and taken < cap:
            first_agents, first_status = inbox.agents[0], inbox.statuses[0]
            first_out = inbox.outputs[0]
            take = min(cap - taken, first_agents.shape[0])
            out = np.zeros((take, out_dim), np.float32)
            status = first_status[:take].copy()
            if first_out is not None:
                if first_out.shape[1] == out_dim:
                    out[:] = first_out[:take]
                else:  # the model gives another width than the policy reads: unusable
                    status[status == InferStatus.OK] = InferStatus.FAILED
            agents.append(first_agents[:take])
            statuses.append(status)
            outputs.append(out)
            taken += take
            inbox.rows -= take
            if take == first_agents.shape[0]:
                inbox.agents.popleft()
                inbox.statuses.popleft()
                inbox.outputs.popleft()
            else:
                inbox.agents[0], inbox.statuses[0] = first_agents[take:], first_status[take:]
                inbox.outputs[0] = first_out[take:] if first_out is not None else None
        if not agents:
            return (
                np.zeros(0, np.int32),
                np.zeros(0, np.int32),
                np.zeros((0, out_dim), np.float32),
            )
        return np.concatenate(agents), np.concatenate(statuses), np.concatenate(outputs)

    # --- the runner's calls --------------------------------------------------------

    def receive(self, results: deque[tuple[float, Actions]] | None, now: float) -> None:
        """File arrived results (with when they arrived); answer TIMEOUT for requests past
        deadline + grace."""
        while results:
            arrived, result = results.popleft()
            assert result.request_id is not None
            sent = self._sent.pop(result.request_id, None)
            if sent is None:
                self.counters.late_results += 1
                continue
            status = InferStatus(result.status)
            outputs: NDArray[np.float32] | None = None
            if status is InferStatus.OK:
                if result.actions.shape[0] != sent.agents.shape[0] or not np.array_equal(
                    result.agent_ids, sent.agent_ids
                ):
                    logger.warning(
                        "heavy result does not match its request",
                        extra={"request_id": result.request_id, "model": sent.model},
                    )
                    status = InferStatus.FAILED
                else:
                    outputs = np.array(result.actions, dtype=np.float32)
            self._file(sent.slot, sent.model, sent.agents, status, outputs)
            self.latency.record(arrived - sent.sent)
        for request_id in [r for r, s in self._sent.items() if s.expires <= now]:
            sent = self._sent.pop(request_id)
            self.counters.expired_locally += 1
            self._file(sent.slot, sent.model, sent.agents, InferStatus.TIMEOUT, None)
            self.latency.record(now - sent.sent)

    def send(self, client: GatewayClient | None, table: AgentTable, tick: int, now: float) -> None:
        """Send what the policies asked for this tick (rule 3)."""
        queued, self._queued = self._queued, []
        if not queued:
            return
        groups = table.groups()
        usable = (
            client is not None
            and client.closed_reason is None
            and client.welcome is not None
            and FEATURE_HEAVY in client.session.features
        )
        window = client.welcome.infer_window if usable and client and client.welcome else 0
        for slot, model, agents, rows in queued:
            self.counters.rows += int(agents.shape[0])
            if not usable or len(self._sent) >= window:
                self._file(slot, model, agents, InferStatus.REJECTED, None)
                continue
            assert client is not None
            group = groups.get(slot)
            if group is None:
                self._file(slot, model, agents, InferStatus.FAILED, None)
                continue
            indices = (group.start + agents) if isinstance(group, slice) else group[agents]
            agent_ids = table.ids[indices].astype(np.uint32)
            self._next_id += 1
            try:
                client.send_infer(
                    InferRequest(
                        request_id=self._next_id,
                        model=model,
                        deadline_ms=self.deadline_ms,
                        tick=tick,
                        agent_ids=agent_ids,
                        inputs=rows,
                    )
                )
            except Exception as exc:  # the session ended or refused it: never a silent loss
                logger.warning("heavy request not sent", extra={"model": model, "error": str(exc)})
                self._file(slot, model, agents, InferStatus.REJECTED, None)
                continue
            self._sent[self._next_id] = _Sent(
                slot=slot,
                model=model,
                agents=agents,
                agent_ids=agent_ids,
                sent=now,
                expires=now + self.deadline_ms / 1000 + self.grace_s,
            )
            self.counters.requests += 1

    # --- internals -----------------------------------------------------------------

    def _file(
        self,
        slot: int,
        model: str,
        agents: NDArray[np.int32],
        status: InferStatus,
        outputs: NDArray[np.float32] | None,
    ) -> None:
        inbox = self._inboxes.setdefault((slot, model), _Inbox())
        inbox.agents.append(agents)
        inbox.statuses.append(np.full(agents.shape[0], int(status), np.int32))
        inbox.outputs.append(outputs)
        inbox.rows += int(agents.shape[0])
        name = status.name
        self.counters.results[name] = self.counters.results.get(name, 0) + int(agents.shape[0])
        while inbox.rows > self.max_inbox_rows and inbox.agents:
            dropped = inbox.agents.popleft()
            inbox.statuses.popleft()
            inbox.outputs.popleft()
            inbox.rows -= int(dropped.shape[0])
            self.counters.inbox_dropped += int(dropped.shape[0])
