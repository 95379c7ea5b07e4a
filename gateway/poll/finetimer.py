"""A timer for the silences of a serial line, precise to tens of microseconds.

asyncio's timers wake through epoll, whose timeout is in whole milliseconds
(rounded up): a wait of 2.9 ms ends after 3 to 4. The silence a bus keeps
after an answer (t3.5: 4.0 ms at 9600 baud 8E1, 1.75 ms above 19200) is of
that order, so the bus could not say when its next request would go out
within a millisecond, and a millisecond late is a millisecond of idle line
on a saturated bus (docs/performance.md, the wire figures).

A Linux timerfd has nanosecond resolution and wakes the same epoll as any
file: the loop sleeps until it fires, no sooner, never spinning. It is made
through ctypes (the standard library has os.timerfd_create only from Python
3.13). Where that fails (not Linux, a libc without it), the timer is made
`broken` and waits on asyncio's own timer, as the bus did before.

The timer is armed relative to now, not at an absolute time: a process
whose clocks are faked (libfaketime, in the clock-jump tests) shifts
absolute deadlines. And an asyncio timer FALLBACK_S later stands behind
every wait: a timerfd that does not fire (whatever the reason) costs one
wait that much, after which the timer keeps to asyncio's.

The syscalls (timerfd_create, timerfd_settime) are in systemd's @timer
group, which the unit's @system-service allows.
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import math
import os
import time

CLOCK_MONOTONIC = 1         # what time.monotonic() reads on Linux
TFD_NONBLOCK = os.O_NONBLOCK
TFD_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)
FALLBACK_S = 0.05

log = logging.getLogger(__name__)


class _Timespec(ctypes.Structure):
    # time_t and long are both the C long on the glibc ABIs a Pi runs
    # (armhf with 32-bit time_t, arm64): the plain timerfd_settime symbol
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        create, settime = libc.timerfd_create, libc.timerfd_settime
    except (OSError, AttributeError):
        return None
    create.argtypes, create.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
    settime.restype = ctypes.c_int
    return create, settime


class FineTimer:
    """One one-shot timerfd, for one task at a time (a bus's own task)."""

    def __init__(self, fd: int, settime) -> None:
        self._fd = fd
        self._settime = settime
        self._spec = _Itimerspec()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fut: asyncio.Future | None = None
        self.fired = 0      # times a wait ended on the timer (tests)
        self.broken = ""    # why waits went back to asyncio's timer, if they did

    @classmethod
    def create(cls) -> "FineTimer":
        """A timer on a new timerfd; without one, a timer that is asyncio's."""
        fns = _libc()
        fd = -1 if fns is None else fns[0](CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        timer = cls(fd, fns[1] if fns else None)
        if fd < 0:
            timer.broken = "no timerfd here"
        return timer

    async def sleep_until(self, when: float) -> None:
        """Return once time.monotonic() >= when."""
        loop = asyncio.get_running_loop()
        delay = when - time.monotonic()
        if self.broken:
            await asyncio.sleep(max(0.0, delay))
            return
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)
            loop.add_reader(self._fd, self._expired)
            self._loop = loop
        ns = max(1, math.ceil(delay * 1e9))
        value = self._spec.it_value
        value.tv_sec, value.tv_nsec = divmod(ns, 1_000_000_000)
        if self._settime(self._fd, 0, ctypes.byref(self._spec), None) != 0:
            self._give_up(f"timerfd_settime: {os.strerror(ctypes.get_errno())}")
            await asyncio.sleep(max(0.0, delay))
            return
        fut = self._fut = loop.create_future()
        backup = loop.call_later(max(0.0, delay) + FALLBACK_S, self._late, fut)
        try:
            await fut
        finally:
            self._fut = None
            backup.cancel()
        while time.monotonic() < when:   # never early, whatever woke us
            await asyncio.sleep(when - time.monotonic())

    def _late(self, fut: asyncio.Future) -> None:
        if not fut.done():
            self._give_up("the timerfd did not fire")
            fut.set_result(None)

    def _give_up(self, why: str) -> None:
        self.broken = why
        log.warning("fine timer: %s; serial silences are timed on asyncio's timer "
                    "(up to 1 ms late) from now on", why)

    def _expired(self) -> None:
        try:
            os.read(self._fd, 8)
        except (BlockingIOError, InterruptedError):
            return      # re-armed before this wake-up was served: not this wait's
        fut = self._fut
        if fut is not None and not fut.done():
            self.fired += 1
            fut.set_result(None)

    def close(self) -> None:
        if self._fd < 0:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1
