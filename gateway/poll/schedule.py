"""Which device on a bus is due next: a heap of deadlines on the monotonic clock.

A bus with hundreds of units must not scan all of them on every turn. A
device's deadline lives in `DeviceRuntime.next_due`; every change goes
through `set()`, which pushes a new heap entry and leaves the old one to be
skipped when it reaches the top (lazy deletion), so each turn costs
O(log n) and the heap holds at most a few stale entries per device.
"""
from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable

from .runtime import UNAVAILABLE_AFTER, DeviceRuntime


class Schedule:
    def __init__(self, devices: Iterable[DeviceRuntime] = ()) -> None:
        self._heap: list[tuple[float, int, DeviceRuntime]] = []
        self._latest: dict[int, int] = {}   # id(device) -> number of its live entry
        self._n = itertools.count()
        for d in devices:
            self.set(d, d.next_due)

    def set(self, d: DeviceRuntime, due: float) -> None:
        d.next_due = due
        n = next(self._n)
        self._latest[id(d)] = n
        heapq.heappush(self._heap, (due, n, d))
        if len(self._heap) > 4 * len(self._latest) + 64:
            self._compact()

    def peek(self) -> DeviceRuntime | None:
        """The device due first, or None when the bus has none."""
        heap = self._heap
        while heap:
            _due, n, d = heap[0]
            if self._latest.get(id(d)) == n:
                return d
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> DeviceRuntime | None:
        """The first device due at `now`, taken off the schedule until its
        next `set()`; None when nothing is due."""
        d = self.peek()
        if d is None or d.next_due > now:
            return None
        heapq.heappop(self._heap)
        del self._latest[id(d)]
        return d

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if self._latest.get(id(e[2])) == e[1]]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._latest)


def next_due(d: DeviceRuntime, now: float, backoff_max_s: float) -> float:
    """When to poll `d` again after a poll that ended at `now`."""
    interval = d.cfg.poll_interval_s
    if d.fails >= UNAVAILABLE_AFTER:
        # an unavailable unit backs off on its own, up to the bus's maximum
        backoff = interval * (2 ** min(10, d.fails - UNAVAILABLE_AFTER + 1))
        return now + min(max(interval, backoff_max_s), backoff)
    # Fixed rate, not fixed delay. After a stall, skip the cycles it cost
    # rather than fire catch-up polls, and keep each device's phase: were
    # every late device moved to now + interval, they would all fall due at
    # once, every cycle, from then on.
    nxt = d.next_due + interval
    if nxt > now:
        return nxt
    return d.next_due + interval * (math.floor((now - d.next_due) / interval) + 1)
