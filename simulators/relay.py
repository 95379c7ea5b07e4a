"""The noisy line in place: a relay between the gateway's pseudo-terminal and
the simulator's server.

    gateway --[socat pty pair]--> relay --[inner pty]--> pymodbus server
                                   |
                     answers framed, then shaped by the
                     answering device's Noise (noise.py)

Requests pass through untouched, byte for byte as they come. Answers are
cut into frames by their own function byte and byte count, and each goes
through the noise of the device whose unit id it carries, with the request
it answers (the last complete request on the line). Bytes that do not make
a frame pass through once the line has been quiet for IDLE_S.

The relay runs in the simulator's event loop and never blocks it: both
sides are non-blocking, and a write the far side does not take is lost,
as on a real line with nobody listening.
"""
from __future__ import annotations

import asyncio
import logging
import os
import termios
import tty

from .device import SimulatedDevice
from .rtu import Request, crc_ok, request_length, response_length

log = logging.getLogger(__name__)

IDLE_S = 0.05      # quiet time after which unframed bytes are passed on
BUFFER_MAX = 1024  # a line buffer that grows past this is noise: flushed


class Relay:
    def __init__(self, outer_path: str, devices: list[SimulatedDevice]) -> None:
        self.outer_path = outer_path
        self.devices = {d.unit: d for d in devices}
        self.inner_path: str | None = None
        self._outer: int | None = None
        self._master: int | None = None
        self._slave: int | None = None
        self._tx = bytearray()   # master -> slave, parsed for the pending request
        self._rx = bytearray()   # slave -> master, cut into frames
        self._pending: Request | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._timers: set[asyncio.TimerHandle] = set()

    def start(self) -> str:
        """Open both sides; returns the inner pty the server must serve on."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave, termios.TCSANOW)
        os.set_blocking(self._master, False)
        self.inner_path = os.ttyname(self._slave)
        self._outer = os.open(self.outer_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._outer, termios.TCSANOW)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._outer, self._from_master)
        loop.add_reader(self._master, self._from_slave)
        return self.inner_path

    def stop(self) -> None:
        loop = asyncio.get_running_loop()
        for t in list(self._timers) + ([self._idle] if self._idle else []):
            t.cancel()
        self._timers.clear()
        for fd in (self._outer, self._master):
            if fd is not None:
                loop.remove_reader(fd)
        for fd in (self._outer, self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._outer = self._master = self._slave = None
        for d in self.devices.values():
            if d.line.noise is not None and d.line.noise.injected:
                log.info("noise %s (unit %d): %s", d.name, d.unit, dict(sorted(d.line.noise.injected.items())))

    # -- master -> slave -------------------------------------------------------

    def _from_master(self) -> None:
        data = _read(self._outer)
        if not data:
            return
        _write(self._master, data)
        self._tx += data
        while self._tx:
            n = request_length(self._tx)
            if n is None or len(self._tx) > BUFFER_MAX:
                self._tx.clear()
                return
            if n == 0 or len(self._tx) < n:
                return
            if crc_ok(self._tx[:n]):
                self._pending = Request(bytes(self._tx[:n]))
                del self._tx[:n]
            else:
                del self._tx[0]  # hunt for the next frame start

    # -- slave -> master -------------------------------------------------------

    def _from_slave(self) -> None:
        data = _read(self._master)
        if not data:
            return
        self._rx += data
        while self._rx:
            n = response_length(self._rx)
            if n is None or n == 0 or len(self._rx) < n:
                if len(self._rx) > BUFFER_MAX:
                    self._flush()
                else:
                    self._arm_idle()
                return
            adu, self._rx = bytes(self._rx[:n]), self._rx[n:]
            self._answer(adu)

    def _answer(self, adu: bytes) -> None:
        dev = self.devices.get(adu[0])
        req = self._pending if self._pending is not None and self._pending.unit == adu[0] else None
        noise = dev.line.noise if dev is not None else None
        if noise is None or req is None or not crc_ok(adu):
            self._send(adu)
            return
        for delay, data in noise.shape(req, adu, dev.rng):
            if delay <= 0:
                self._send(data)
            else:
                self._later(delay, data)

    def _later(self, delay: float, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self._send(data)
        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(IDLE_S, self._flush)

    def _flush(self) -> None:
        self._idle = None
        data, self._rx = bytes(self._rx), bytearray()
        if data:
            self._send(data)

    def _send(self, data: bytes) -> None:
        if data and self._outer is not None:
            _write(self._outer, data)


def _read(fd: int | None) -> bytes:
    out = b""
    while fd is not None:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:  # the far end closed (EIO on a pty): nothing to read
            break
        if not chunk:
            break
        out += chunk
    return out


def _write(fd: int | None, data: bytes) -> None:
    if fd is None:
        return
    try:
        os.write(fd, data)
    except OSError as exc:  # nobody reading, or the pty went away: lost, as on a line
        log.debug("relay: %d bytes lost: %s", len(data), exc)
