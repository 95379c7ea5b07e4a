"""site/ticks.py: the daemon's periodic timers share wake-ups.

An idle gateway's CPU is its wake-ups (about 0.2 ms each on a small VM,
whatever the timer does), so the loop-lag sampler and the MQTT keep-alive
are due on one grid. Counted with a real event loop whose
selector records every sleep it takes: a count, not a time."""
from __future__ import annotations

import asyncio
import math
import selectors

import pytest

from gateway.site.looplag import LoopLag
from gateway.site.ticks import next_tick, sleep_to_tick


@pytest.mark.parametrize("now", [0.0, 0.1, 0.25, 0.2499999, 1.0, 12345.75, 98765.4321, 1e6 + 0.25])
@pytest.mark.parametrize("period", [0.25, 1.0, 5.0, 0.0625])
def test_next_tick_is_the_first_multiple_after_now(now, period):
    t = next_tick(now, period)
    assert now < t <= now + period
    assert t / period == math.floor(t / period)


def test_the_keep_alive_lies_on_the_lag_samplers_grid():
    from gateway.deliver.mqtt import MISC_S
    from gateway.site.looplag import PERIOD_S
    for now in (0.0, 3.3, 1234.567, 7.75, 86399.99):
        t = next_tick(now, MISC_S)
        assert t / PERIOD_S == math.floor(t / PERIOD_S), now   # exactly on it, no float drift


class _CountingSelector(selectors.DefaultSelector):
    """Counts the selects that slept (a timeout > 0): the process's wake-ups."""

    def __init__(self):
        super().__init__()
        self.sleeps = 0

    def select(self, timeout=None):
        if timeout is None or timeout > 0:
            self.sleeps += 1
        return super().select(timeout)


def _run(main):
    sel = _CountingSelector()
    loop = asyncio.SelectorEventLoop(sel)
    try:
        return loop.run_until_complete(main()), sel.sleeps
    finally:
        loop.close()


def _sampler_with_a_second_timer(second_timer):
    lag = LoopLag(period_s=1 / 16, window_s=60.0)
    misc = [0]

    async def main():
        loop = asyncio.get_running_loop()
        sampler = loop.create_task(lag.run())

        async def other():
            while True:
                await second_timer()
                misc[0] += 1
        t = loop.create_task(other())
        await asyncio.sleep(0)
        end = next_tick(loop.time(), 1.0) + 1.0     # whole grid seconds: no stray sleep at either end
        await asyncio.sleep(end - loop.time() + 0.001)
        t.cancel()
        sampler.cancel()
        await asyncio.gather(t, sampler, return_exceptions=True)

    _, sleeps = _run(main)
    return lag.summary()["samples"], misc[0], sleeps


def test_a_second_periodic_timer_on_the_grid_adds_no_wake_up():
    samples, misc, sleeps = _sampler_with_a_second_timer(lambda: sleep_to_tick(1 / 4))
    assert samples >= 16 and misc >= 4
    # one sleep per lag sample, plus the first one and the final one
    assert sleeps <= samples + 2, (samples, misc, sleeps)


def test_the_count_sees_a_timer_off_the_grid():
    # what the other timers were: asyncio.sleep(period) after their work, on their own phase
    samples, misc, sleeps = _sampler_with_a_second_timer(lambda: asyncio.sleep(1 / 4 - 0.01))
    assert sleeps >= samples + misc - 1, (samples, misc, sleeps)


def test_loop_lag_ticks_on_its_grid():
    lag = LoopLag(period_s=1 / 16, window_s=60.0)
    whens = []

    async def main():
        loop = asyncio.get_running_loop()
        task = loop.create_task(lag.run())
        for _ in range(6):
            await asyncio.sleep(1 / 16)
            whens.append(lag._timer.when())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    _run(main)
    assert all(w * 16 == math.floor(w * 16) for w in whens), whens
