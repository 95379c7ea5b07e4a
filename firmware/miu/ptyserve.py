"""Serve a simulated meter interface unit over a serial port (host tool, CPython).

    python -m miu.ptyserve [--port /dev/pts/N] [--unit 7] [--baud 9600]
                           [--balance LITRES] [--open] [--flow M3H]
                           [--magnet-seconds S] [--state FILE]

The firmware's own RtuPort/RtuSlave/MeterCore answer on the port, driven by
real time through a SimHal. Without --port a pseudo-terminal is created and
its path printed on stdout as `PTY /dev/pts/N` (one line, flushed) before
serving; clients open that path. With --port (e.g. one end of
`socat -d -d pty,raw,echo=0 pty,raw,echo=0`) the port is opened with
pyserial. Either way `READY unit=<u>` is printed once serving. Stops on
SIGINT/SIGTERM.

--balance credits litres and --open opens the valve at start, as a
purchase card and the open command would. --flow demands gas at a constant
rate (it flows only while the valve is open). --magnet-seconds holds a magnet
on the meter for the first S seconds: ERR-1 latches and shuts the valve until
the fault card (0xA5C1 to holding 100) clears it. --state keeps the flash
image in a file, so counts survive a restart of this process.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import sys
import termios
import time
import tty
from types import FrameType

from miu.flash import FileMedium
from miu.regs import CMD_OPEN_VALVE, HR_COMMAND
from miu.rtu import RtuPort, RtuSlave
from miu.sim import SimFlash, SimHal, SimMeter


class FdUart:
    """The master side of a pty as the UART RtuPort expects."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)

    def any(self) -> int:
        buf = fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(buf, sys.byteorder)

    def readinto(self, buf: bytearray | memoryview, nbytes: int, /) -> int | None:
        try:
            data = os.read(self.fd, nbytes)
        except BlockingIOError:
            return 0
        except OSError:  # EIO: no client has the other side open
            return 0
        buf[:len(data)] = data
        return len(data)

    def write(self, buf: bytes | bytearray | memoryview, /) -> int | None:
        data = bytes(buf)
        sent = 0
        while sent < len(data):
            try:
                sent += os.write(self.fd, data[sent:])
            except BlockingIOError:
                select.select([], [self.fd], [], 0.05)
        return sent

    def txdone(self) -> bool:
        return True


class SerialUart:
    """A pyserial port as the UART RtuPort expects."""

    def __init__(self, port: str, baud: int) -> None:
        import serial  # host dependency, only needed with --port

        self._s = serial.Serial(port, baudrate=baud, timeout=0, write_timeout=2)

    def any(self) -> int:
        return int(self._s.in_waiting)

    def readinto(self, buf: bytearray | memoryview, nbytes: int, /) -> int | None:
        data = self._s.read(nbytes)
        buf[:len(data)] = data
        return len(data)

    def write(self, buf: bytes | bytearray | memoryview, /) -> int | None:
        n = self._s.write(bytes(buf))
        self._s.flush()  # returns once the OS has sent it: the DE window
        return int(n or 0)

    def txdone(self) -> bool:
        return True


class RealClock:
    """Microsecond ticks from the host's monotonic clock, wrapping like MicroPython's."""

    def ticks_us(self) -> int:
        return (time.monotonic_ns() // 1000) & 0x3FFFFFFF

    def ticks_diff(self, a: int, b: int) -> int:
        return ((a - b + 0x20000000) & 0x3FFFFFFF) - 0x20000000


def open_pty() -> tuple[int, int, str]:
    """A new pty pair in raw mode: (master fd, slave fd, slave path)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    return master, slave, os.ttyname(slave)


def build_meter(args: argparse.Namespace) -> SimMeter:
    hal = SimHal(start_ms=int(time.monotonic() * 1000))
    # --state: the same store format as the board's /miu.dat, in a file.
    flash = FileMedium(args.state, 8 * 64) if args.state else SimFlash(8 * 64)
    meter = SimMeter(hal, flash)
    if args.balance:
        meter.credit(args.balance)
    if args.open and not meter.core.valve_open:
        meter.core.write_holding(HR_COMMAND, CMD_OPEN_VALVE)
    return meter


def serve(uart: FdUart | SerialUart, args: argparse.Namespace,
          stop: list[bool]) -> None:
    meter = build_meter(args)
    hal = meter.hal
    port = RtuPort(uart, RtuSlave(args.unit, meter.core), RealClock(), baud=args.baud)
    start = time.monotonic()
    last = start
    print(f"READY unit={args.unit}", flush=True)
    while not stop[0]:
        now = time.monotonic()
        ms = int((now - last) * 1000)
        if ms > 0:
            last += ms / 1000.0
            hal.magnet = now - start < args.magnet_seconds
            if args.flow > 0:
                meter.run_flow(args.flow, ms, step_ms=ms)
            else:
                hal.advance(ms)
                meter.tick()
        if not port.poll():
            time.sleep(0.0005)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m miu.ptyserve", description=__doc__.split("\n")[0])
    p.add_argument("--port", help="serial device to serve on; default: create a pty and print its path")
    p.add_argument("--unit", type=int, default=7)
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--balance", type=int, default=0, help="litres credited at start")
    p.add_argument("--open", action="store_true", help="open the valve at start")
    p.add_argument("--flow", type=float, default=0.0, help="gas demand, m3/h")
    p.add_argument("--magnet-seconds", type=float, default=0.0,
                   help="magnet held on the meter for the first S seconds")
    p.add_argument("--state", help="file keeping the flash image between runs")
    args = p.parse_args(argv)

    stop = [False]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    uart: FdUart | SerialUart
    if args.port:
        uart = SerialUart(args.port, args.baud)
        print(f"PORT {args.port}", flush=True)
        serve(uart, args, stop)
        return 0
    master, slave, path = open_pty()
    print(f"PTY {path}", flush=True)
    try:
        # Keeping our own slave fd open keeps the pty alive between clients.
        serve(FdUart(master), args, stop)
    finally:
        os.close(master)
        os.close(slave)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
