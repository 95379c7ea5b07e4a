"""Periodic work on one grid of the loop's clock.

On the small VMs and boards a site runs on, a wake-up of an idle process
costs about 0.2 ms of CPU whatever it then does (measured: an asyncio timer
alone, 215-232 us per wake). The loop-lag sampler ticks four times a
second and the MQTT keep-alive once a second: on their own clocks they
were five wake-ups a second, on one grid of the loop's clock four
(docs/performance.md, idle CPU).

Only work too small to matter goes on the grid. What shares the sampler's
wake-up runs just after its sample and is done long before the next one:
the sampler never sees it. Housekeeping (a state flush holds the loop for
milliseconds) keeps its own phase, where a stall in it shows as lag.
"""
from __future__ import annotations

import asyncio
import math

__all__ = ["next_tick", "sleep_to_tick"]


def next_tick(now: float, period: float) -> float:
    """The first multiple of `period` after `now`."""
    t = (math.floor(now / period) + 1) * period
    return t if t > now else t + period


async def sleep_to_tick(period: float) -> None:
    """Sleep until the loop's clock reaches the next multiple of `period`.
    A timer at the exact grid time, not asyncio.sleep: sleep adds its delay
    to a later reading of the clock, a few microseconds past the grid, and
    a wake-up shared with another timer could come just before it."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    timer = loop.call_at(next_tick(loop.time(), period), _wake, fut)
    try:
        await fut
    finally:
        timer.cancel()


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)
