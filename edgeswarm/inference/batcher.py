"""One model's queue of heavy-lane requests, cut into batches: sans-I/O.

A :class:`Batcher` is fed :class:`LaneRequest` objects and the time; it never
reads a clock nor arms a timer. Its rules, all here:

1. Requests queue in arrival order, whole (a request is never split across
   batches). The queue holds at most ``max_queued_rows`` rows: a request that
   would pass it is refused (:meth:`Batcher.add` returns False), so when
   inference falls behind the caller answers REJECTED at once and memory
   stays bounded.
2. A batch is ready when the queued rows reach ``max_batch_rows``, or when
   the oldest queued request has waited ``max_wait_s``. :meth:`Batcher.take`
   cuts it: queued requests in order while the total stays within
   ``max_batch_rows`` (a single request larger than that forms its own batch).
   Requests of many origins (edges) mix in one batch.
3. A request whose deadline passes while it is queued is removed and handed
   back by :meth:`Batcher.expire` (the caller answers TIMEOUT: never a silent
   drop).
4. :meth:`Batcher.wake_at` is the next time something is due (a batch by
   ``max_wait_s`` or a deadline); the adapter arms one timer for it.

The gateway asks :meth:`Batcher.wake_at` after every event and
:meth:`Batcher.expire` at every timer, so neither may cost in proportion to
the queue: the earliest deadline comes from a heap (entries of requests that
already left are dropped when they reach its top), and the queue is scanned
only when a request has really expired. When inference fell behind and the
queue grew, a scan per event made the gateway slower the longer the queue was
(issue 17: a third of the gateway's time at half the batched rate).

A :class:`Batch` knows its requests and concatenated rows and splits the model's
outputs back per request (:meth:`Batch.split`).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_MAX_BATCH_ROWS",
    "DEFAULT_MAX_QUEUED_ROWS",
    "DEFAULT_MAX_WAIT_S",
    "Batch",
    "Batcher",
    "LaneRequest",
]

DEFAULT_MAX_BATCH_ROWS = 512
"""Rows per batch unless configured otherwise."""
DEFAULT_MAX_WAIT_S = 0.002
"""Longest a queued request waits for its batch to fill, unless configured otherwise."""
DEFAULT_MAX_QUEUED_ROWS = 64 * DEFAULT_MAX_BATCH_ROWS
"""Rows a model's queue holds before it refuses requests, unless configured otherwise."""


@dataclass(frozen=True, eq=False)
class LaneRequest:
    """One edge's request as the gateway holds it until it is answered."""

    origin: Hashable
    """Who to answer (the edge's session)."""
    request_id: int
    """The origin's id of the request (its INFER_REQUEST's ``request_id``)."""
    model: str
    """Model asked for."""
    agent_ids: NDArray[np.uint32]
    """Shape (n,): the agents the rows are for (they go back with the result)."""
    inputs: NDArray[np.float32]
    """Shape (n, k): one input row per agent."""
    received: float
    """When the gateway received it (monotonic seconds)."""
    deadline: float
    """When it must be answered at the latest: ``received + deadline_ms / 1000``."""

    @property
    def rows(self) -> int:
        """Number of input rows."""
        return int(self.inputs.shape[0])


_batch_ids = itertools.count(1)


@dataclass(frozen=True, eq=False)
class Batch:
    """Requests of one model cut from the queue together; their rows are one input."""

    model: str
    requests: tuple[LaneRequest, ...]
    batch_id: int = field(default_factory=lambda: next(_batch_ids))
    """Unique within the process."""

    @property
    def rows(self) -> int:
        return sum(request.rows for request in self.requests)

    @property
    def deadline(self) -> float:
        """The earliest deadline of its requests."""
        return min(request.deadline for request in self.requests)

    def inputs(self) -> NDArray[np.float32]:
        """All requests' rows, in order, as one ``(rows, k)`` array."""
        if len(self.requests) == 1:
            return np.ascontiguousarray(self.requests[0].inputs, dtype=np.float32)
        return np.concatenate([request.inputs for request in self.requests]).astype(
            np.float32, copy=False
        )

    def agent_ids(self) -> NDArray[np.uint32]:
        """All requests' agent ids, in the order of :meth:`inputs`."""
        if len(self.requests) == 1:
            return np.ascontiguousarray(self.requests[0].agent_ids, dtype=np.uint32)
        return np.concatenate([request.agent_ids for request in self.requests])

    def split(
        self, outputs: NDArray[np.float32]
    ) -> Iterator[tuple[LaneRequest, NDArray[np.float32]]]:
        """Each request with its rows of ``outputs`` (``(rows, k)``, the order of :meth:`inputs`).

        Raises ``ValueError`` when ``outputs`` does not have one row per input row.
        """
        if outputs.ndim != 2 or outputs.shape[0] != self.rows:
            raise ValueError(f"{outputs.shape[0]} output rows for a batch of {self.rows}")
        start = 0
        for request in self.requests:
            yield request, outputs[start : start + request.rows]
            start += request.rows


class Batcher:
    """The queue of one model (rules in the module docstring)."""

    def __init__(
        self,
        model: str,
        *,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        max_queued_rows: int = DEFAULT_MAX_QUEUED_ROWS,
    ) -> None:
        if max_batch_rows < 1 or max_queued_rows < max_batch_rows or max_wait_s < 0:
            raise ValueError("need max_batch_rows >= 1, max_queued_rows >= it, max_wait_s >= 0")
        self.model = model
        self.max_batch_rows = max_batch_rows
        self.max_wait_s = max_wait_s
        self.max_queued_rows = max_queued_rows
        self._queue: deque[LaneRequest] = deque()
        self._queued: set[LaneRequest] = set()
        """The requests in ``_queue``: a heap entry of one not in it is stale."""
        self._deadlines: list[tuple[float, int, LaneRequest]] = []
        """Heap of (deadline, arrival number, request); may hold stale entries."""
        self._arrivals = itertools.count()
        self._rows = 0

    @property
    def queued_rows(self) -> int:
        """Rows waiting in the queue."""
        return self._rows

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, request: LaneRequest) -> bool:
        """Queue ``request``; False (nothing queued) when it would pass ``max_queued_rows``."""
        if self._rows + request.rows > self.max_queued_rows:
            return False
        self._queue.append(request)
        self._queued.add(request)
        heapq.heappush(self._deadlines, (request.deadline, next(self._arrivals), request))
        self._rows += request.rows
        return True

    def ready(self, now: float) -> bool:
        """Whether a batch is due: enough rows, or the oldest request waited long enough."""
        if not self._queue:
            return False
        return self._rows >= self.max_batch_rows or now >= self._queue[0].received + self.max_wait_s

    def take(self, now: float, *, force: bool = False) -> Batch | None:
        """Cut the next batch if one is due (or ``force``: whatever is queued)."""
        if not self._queue or not (force or self.ready(now)):
            return None
        taken: list[LaneRequest] = [self._queue.popleft()]
        rows = taken[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_batch_rows:
            request = self._queue.popleft()
            taken.append(request)
            rows += request.rows
        self._rows -= rows
        self._queued.difference_update(taken)
        self._tidy()
        return Batch(model=self.model, requests=tuple(taken))

    def expire(self, now: float) -> list[LaneRequest]:
        """Remove and return the queued requests whose deadline has passed."""
        earliest = self.earliest_deadline()
        if earliest is None or earliest > now:
            return []
        expired = [r for r in self._queue if r.deadline <= now]
        self._drop(expired)
        return expired

    def remove(self, origin: Hashable) -> list[LaneRequest]:
        """Remove and return every queued request of ``origin`` (its session ended)."""
        gone = [r for r in self._queue if r.origin == origin]
        self._drop(gone)
        return gone

    def wake_at(self) -> float | None:
        """When the next batch is due by waiting, or a queued request's deadline passes."""
        earliest = self.earliest_deadline()
        if earliest is None:
            return None
        return min(self._queue[0].received + self.max_wait_s, earliest)

    def earliest_deadline(self) -> float | None:
        """The earliest deadline of a queued request (None: the queue is empty)."""
        heap = self._deadlines
        while heap and heap[0][2] not in self._queued:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _drop(self, requests: list[LaneRequest]) -> None:
        if not requests:
            return
        self._queued.difference_update(requests)
        self._queue = deque(r for r in self._queue if r in self._queued)
        self._rows -= sum(request.rows for request in requests)
        self._tidy()

    def _tidy(self) -> None:
        """Rebuild the heap when stale entries outnumber the live ones (bounded memory)."""
        if len(self._deadlines) > 2 * len(self._queued) + 64:
            self._deadlines = [e for e in self._deadlines if e[2] in self._queued]
            heapq.heapify(self._deadlines)
