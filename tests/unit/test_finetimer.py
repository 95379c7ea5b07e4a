"""The timerfd the serial bus times its t3.5 wait on (gateway/poll/finetimer.py):
a real timerfd in a real event loop. No assertion on how soon it wakes
(the machines are shared): only that it never wakes early, and that a
cancelled wait cannot end the next one."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

from gateway.poll.finetimer import FineTimer

pytestmark = pytest.mark.skipif(bool(FineTimer.create().broken), reason="no timerfd here")


def run(coro):
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_a_wait_ends_at_its_time_not_before():
    async def main():
        t = FineTimer.create()
        ends = []
        for delay in (0.0005, 0.002, 0.0037, 0.02):
            when = time.monotonic() + delay
            await t.sleep_until(when)
            ends.append(time.monotonic() - when)
        t.close()
        return ends, t.fired
    ends, fired = run(main())
    assert all(e >= 0 for e in ends), ends
    assert fired == 4


def test_a_time_already_past_returns_at_once():
    async def main():
        t = FineTimer.create()
        await asyncio.wait_for(t.sleep_until(time.monotonic() - 1.0), 5)
        t.close()
    run(main())


def test_a_cancelled_wait_does_not_end_the_next_one_early():
    async def main():
        t = FineTimer.create()
        first = asyncio.ensure_future(t.sleep_until(time.monotonic() + 0.001))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0.01)          # its expiry comes and goes with nobody waiting
        when = time.monotonic() + 0.03
        await t.sleep_until(when)
        late = time.monotonic() - when
        # re-armed while a stale expiry waits to be read
        second = asyncio.ensure_future(t.sleep_until(time.monotonic() + 0.001))
        await asyncio.sleep(0.01)
        second.cancel()
        when2 = time.monotonic() + 0.02
        await t.sleep_until(when2)
        t.close()
        return late, time.monotonic() - when2
    late, late2 = run(main())
    assert late >= 0 and late2 >= 0


def test_close_gives_the_descriptor_back_and_a_new_loop_can_use_a_timer():
    t = FineTimer.create()
    fd = t._fd
    run(t.sleep_until(time.monotonic() + 0.001))
    run(t.sleep_until(time.monotonic() + 0.001))   # a second loop: the reader moves over
    t.close()
    t.close()
    with pytest.raises(OSError):
        os.fstat(fd)


def test_a_timer_that_never_fires_costs_one_wait_then_asyncio_takes_over():
    """A timerfd that does not fire (libfaketime shifting its deadline, say)
    must not hang the bus: here one armed by a settime that arms nothing."""
    real = FineTimer.create()
    t = FineTimer(os.dup(real._fd), lambda *_a: 0)
    real.close()

    async def main():
        when = time.monotonic() + 0.001
        await asyncio.wait_for(t.sleep_until(when), 5)
        first = time.monotonic() - when
        when = time.monotonic() + 0.001
        await asyncio.wait_for(t.sleep_until(when), 5)
        return first, time.monotonic() - when
    first, second = run(main())
    assert t.broken == "the timerfd did not fire" and t.fired == 0
    assert first >= 0 and second >= 0
    t.close()
