"""The wall-clock half of the sandbox: an engine's epoch, advanced by a ticker thread.

Fuel bounds what a call computes; it does not bound how long that takes (a
host call, a slow machine, a cache-missing loop). Each policy engine is built
with epoch interruption (:mod:`~edgeswarm.edge.policy.engine`): the compiled
code checks the engine's epoch at function entries and loop back-edges, and
a call whose store deadline has passed traps with ``interrupt``
(:class:`~edgeswarm.edge.policy.errors.PolicyDeadlineExceeded`).

An :class:`EpochTicker` keeps a daemon thread for one engine while at least
one policy holds it (:meth:`EpochTicker.hold` / :meth:`EpochTicker.release`),
and that thread advances the engine's epoch every :data:`EPOCH_PERIOD_S` while
a call is in flight (:meth:`EpochTicker.call_started` /
:meth:`EpochTicker.call_ended`); between calls it sleeps. A call gets
``ticks_for(deadline)`` epochs, so it is stopped between ``deadline`` and
``deadline + EPOCH_PERIOD_S`` (plus the thread's wake-up) after it starts.
Per call that is ``Store.set_epoch_deadline`` and a counter; no timer is armed
or cancelled. The ticker needs the GIL only for the instant it increments;
host calls check the same deadline against the monotonic clock themselves, so
a guest busy in host calls (holding the GIL) is stopped just as precisely.

Why only during calls: a thread that woke every 2 ms for the life of the
process took the GIL 500 times a second from an edge's tick loop, which is
busy in Python most of the time and in Wasm a few per cent of it (a pure
Python loop ran 2.5-5 % slower beside such a thread, side by side).

Why it parks only after a whole period without a call: waking a parked thread
costs the caller a notify and a GIL hand-over (~3.5 us, 5 % of a 10 000-agent
boids step). A call that starts while the thread is still ticking does not wake
it; the thread parks when a period passed with no call in flight and none
started, so back-to-back calls wake it once and sparse ones (an edge's ticks)
once each, as before.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Final

import wasmtime

EPOCH_PERIOD_S: Final = 0.002
"""Seconds between two epochs of a held engine (the deadline's resolution)."""


class EpochTicker:
    """Advances ``engine``'s epoch every ``period_s`` while held (reference counted)."""

    def __init__(self, engine: wasmtime.Engine, period_s: float = EPOCH_PERIOD_S) -> None:
        if not period_s > 0:
            raise ValueError("period_s must be positive")
        self.engine = engine
        self.period_s = period_s
        self._holders = 0
        self._calls = 0
        self._called = False  # a call started since the thread last looked
        self._parked = 0  # threads waiting for a call, not yet woken (two after release+hold)
        self._lock = threading.Lock()
        self._call_in_flight = threading.Condition(self._lock)
        self._stop: threading.Event | None = None

    @property
    def holders(self) -> int:
        """Policies holding the ticker now."""
        return self._holders

    @property
    def running(self) -> bool:
        """Whether the ticker thread is running (someone holds it)."""
        return self._stop is not None

    def ticks_for(self, seconds: float) -> int:
        """Epoch deadline (in ticks from now) that passes after at least ``seconds``."""
        if not seconds > 0:
            raise ValueError("a deadline must be positive")
        return math.ceil(seconds / self.period_s) + 1

    def hold(self) -> None:
        """Start ticking (if not already); pair with :meth:`release`."""
        with self._lock:
            self._holders += 1
            if self._stop is None:
                self._stop = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="edgeswarm-epoch", daemon=True
                )
                thread.start()

    def release(self) -> None:
        """Undo one :meth:`hold`; the thread stops when nobody holds the ticker."""
        with self._lock:
            if self._holders == 0:
                raise RuntimeError("EpochTicker released more often than held")
            self._holders -= 1
            if self._holders == 0 and self._stop is not None:
                self._stop.set()
                self._stop = None
                self._parked = 0
                self._call_in_flight.notify_all()

    def call_started(self) -> None:
        """A call under an epoch deadline begins: advance the epoch until it ends."""
        with self._lock:
            self._calls += 1
            self._called = True
            if self._parked:
                # all: a thread that release() stopped may still be waiting beside the
                # one a later hold() started, and must not take the only wake-up
                self._parked = 0
                self._call_in_flight.notify_all()

    def call_ended(self) -> None:
        """Undo one :meth:`call_started` (in a ``finally``)."""
        with self._lock:
            if self._calls == 0:
                raise RuntimeError("EpochTicker call ended more often than started")
            self._calls -= 1

    def __enter__(self) -> EpochTicker:
        self.call_started()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.call_ended()

    def _run(self, stop: threading.Event) -> None:
        while True:
            with self._lock:
                while self._calls == 0 and not self._called and not stop.is_set():
                    self._parked += 1
                    self._call_in_flight.wait()  # whoever notifies counts it unparked
                self._called = False
            if stop.is_set():
                return
            # a call is in flight: one epoch per period until a period passes with none
            # in flight and none started (an epoch more after a call ended is harmless:
            # deadlines count from when they are set)
            while not stop.wait(self.period_s):
                self.engine.increment_epoch()
                with self._lock:
                    if self._calls == 0 and not self._called:
                        break
                    self._called = False


_NO_TICKER: Final = contextlib.nullcontext()


def ticking(ticker: EpochTicker | None) -> contextlib.AbstractContextManager[object]:
    """``with ticking(ticker):`` -- ``ticker``'s epochs advance for the length of one call
    (nothing for None). The ticker is its own context manager: no generator per call."""
    return _NO_TICKER if ticker is None else ticker


_tickers: dict[wasmtime.Engine, EpochTicker] = {}
_tickers_lock = threading.Lock()


def ticker_for(engine: wasmtime.Engine) -> EpochTicker:
    """The process's one ticker for ``engine``."""
    with _tickers_lock:
        ticker = _tickers.get(engine)
        if ticker is None:
            ticker = _tickers[engine] = EpochTicker(engine)
        return ticker
