"""Event-loop lag, sampled all the time: how late a timer fires.

Every bus, the publisher and the control socket share one event loop, so
anything that holds the loop (a disk wait, a large parse, a CPU burst) shows
here as lateness before it shows as a missed poll. A timer due every
PERIOD_S fires late by however long the loop was busy; the last WINDOW_S of
samples (2,400) give the percentiles that `edgegw diag` and the status topic
report. The ticks are due at multiples of PERIOD_S on the loop's clock,
the grid the MQTT keep-alive keeps to (site/ticks.py), so the two share
wake-ups: a wake-up costs about 0.2 ms of CPU on a small VM, and four a
second are 0.09 % of a core of the idle budget's 0.2 % (docs/performance.md).
"""
from __future__ import annotations

import asyncio
from collections import deque

from .ticks import next_tick

PERIOD_S = 0.25
WINDOW_S = 600.0


class LoopLag:
    def __init__(self, period_s: float = PERIOD_S, window_s: float = WINDOW_S) -> None:
        self.period_s = period_s
        self.window_s = window_s
        self._samples: deque[float] = deque(maxlen=max(1, int(window_s / period_s)))
        self.max_ever_s = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self._samples.append(lag_s)
        if lag_s > self.max_ever_s:
            self.max_ever_s = lag_s

    async def run(self) -> None:
        # A bare timer callback, not a task that sleeps: no future or task
        # step per sample.
        loop = asyncio.get_running_loop()

        def tick(due: float) -> None:
            now = loop.time()
            self.add(now - due)
            nxt = next_tick(now, self.period_s)   # after a stall: one sample, not a burst
            self._timer = loop.call_at(nxt, tick, nxt)

        first = next_tick(loop.time(), self.period_s)
        self._timer = loop.call_at(first, tick, first)
        try:
            await asyncio.Event().wait()   # until cancelled with the daemon's tasks
        finally:
            self._timer.cancel()

    def summary(self) -> dict:
        """Milliseconds over the window: p50, p99, p99.9, max; None before the first sample."""
        s = sorted(self._samples)
        n = len(s)

        def pct(q: float) -> float | None:
            return round(s[min(n - 1, int(q * n))] * 1000, 2) if n else None

        return {"p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999),
                "max": round(s[-1] * 1000, 2) if n else None, "samples": n,
                "window_s": round(min(n * self.period_s, self.window_s), 1),
                "max_since_start": round(self.max_ever_s * 1000, 2)}
