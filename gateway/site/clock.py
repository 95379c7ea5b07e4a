"""Time helpers: UTC timestamps for payloads and "is the wall clock trustworthy".

A site box often boots without an RTC, so its wall clock can read 1970 or jump
by a year when NTP finally syncs. Anything that measures durations uses
``monotonic()``; the wall clock is only used to label data, and
``clock_synced()`` tells the caller whether that label can be believed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

__all__ = ["utc_now_iso", "clock_synced", "monotonic"]

monotonic = time.monotonic

# Linux <sys/timex.h>
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
_TIMESYNC_FLAG = "/run/systemd/timesync/synchronized"
_CACHE_S = 5.0


_second: list = [None, ""]   # the last whole second formatted, and its text


def utc_now_iso() -> str:
    """Current UTC time as ``2026-11-23T15:36:11.123Z`` (milliseconds, Z suffix).

    Called for every reading: the date and time are formatted once a second."""
    t = time.time()
    sec = int(t)
    if sec != _second[0]:
        _second[0], _second[1] = sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
    return f"{_second[1]}{int((t - sec) * 1000):03d}Z"


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    # Layout of the legacy (native long) struct timex that glibc's adjtimex
    # symbol takes on both 64-bit and 32-bit Linux; the trailing padding is
    # oversized on purpose so a kernel writing a slightly larger struct can
    # never scribble past our buffer.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_pad", ctypes.c_int * 32),
    ]


_adjtimex = None


def _load_adjtimex():
    global _adjtimex
    if _adjtimex is None:
        fn = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fn = libc.adjtimex
            fn.argtypes = [ctypes.POINTER(_Timex)]
            fn.restype = ctypes.c_int
        except (OSError, AttributeError):
            fn = False
        _adjtimex = fn
    return _adjtimex or None


def _probe() -> tuple[bool, str]:
    """Ask the system now, uncached: (synced, source)."""
    fn = _load_adjtimex()
    if fn is not None:
        tx = _Timex()
        tx.modes = 0  # read-only query: needs no privilege
        state = fn(ctypes.byref(tx))
        if state >= 0:
            synced = not (tx.status & _STA_UNSYNC) and state != _TIME_ERROR
            return synced, "adjtimex"
    try:
        return os.path.exists(_TIMESYNC_FLAG), "timesyncd"
    except OSError:
        return False, "unknown"


_cache: tuple[float, bool, str] | None = None


def clock_synced() -> bool:
    """True when the kernel reports the wall clock as NTP-synchronised.

    Cached for a few seconds: callers stamp every reading with it, and a
    syscall per reading would be wasted on a value that changes rarely.
    """
    global _cache
    now = monotonic()
    cached = _cache
    if cached is not None and now - cached[0] < _CACHE_S:
        return cached[1]
    synced, source = _probe()
    _cache = (now, synced, source)
    return synced
