"""A baud-accurate RS-485 line between two pseudo-terminals.

A pseudo-terminal delivers bytes the instant they are written, so a gateway
talking to a simulator over a plain pty pair never waits for the wire, and
any claim about bus efficiency made that way is meaningless. This emulator
sits between the master's pty (the gateway) and the slaves' pty (the
simulator) and lets a byte through only when a real line could have carried
it:

- each character takes `char_bits / baudrate` seconds (10 bits for 8N1, 11
  for 8E1 or 8N2): a byte is released to the far side when its last bit
  would have arrived, never earlier;
- a new frame starts no earlier than t3.5 (3.5 characters, 1.75 ms fixed
  above 19200 baud) after the line went quiet, plus the slave's turnaround
  when a slave answers the master;
- half duplex: one frame on the wire at a time. A frame offered while the
  other side is talking waits its turn (and is counted: on a real line it
  would collide).

A frame is a burst of back-to-back characters: bytes written by one side
while its previous bytes are still on the wire continue the same frame;
bytes written after its last character left start a new one.

The timing model (`Line`) is pure: times are passed in, so it is tested by
asserting the schedule it computes, not by sleeping. `WireEmulator` drives it
with real ptys and the monotonic clock. Both sides are plain file
descriptors: the pty framing (termios) is not used for timing, so a pty that
refuses parity can still stand in for an 8E1 line (`char_bits=11`).

Run standalone: `python -m simulators.wire --baud 9600 --bits 11 --dir D`
prints one JSON line with the two pty paths and serves until SIGTERM;
`--stats FILE` rewrites the counters there twice a second (JSON); SIGUSR1
starts the requests' lateness samples afresh (a measuring window begins).
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import select
import signal
import sys
import time
import tty
from collections import deque

from .line import DEFAULT_CHUNK_S, MASTER, SLAVE, Line, LineSpec

LATENESS_SAMPLES = 4096


# --------------------------------------------------------------------------- ptys


def _raw_pty() -> tuple[int, int, str]:
    master, slave = os.openpty()
    tty.setraw(slave)        # no echo, no line discipline: bytes pass as they are
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


def _fine_timers() -> None:
    # Linux lets a sleeping thread wake up to 50 us late by default (timer
    # slack); ask for 1 us so release times are as close as the kernel allows.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1000, 0, 0, 0)   # PR_SET_TIMERSLACK, ns
    except (OSError, AttributeError):
        pass


class WireEmulator:
    """Two pty pairs and a `Line` between them, driven by the real clock."""

    def __init__(self, spec: LineSpec, chunk_s: float = DEFAULT_CHUNK_S) -> None:
        self.line = Line(spec, chunk_s)
        self.fds: list[int] = []
        self.keep: list[int] = []
        self.paths: list[str] = []
        for _ in (MASTER, SLAVE):
            m, s, path = _raw_pty()
            self.fds.append(m)
            self.keep.append(s)     # held open so the pty survives the peer closing it
            self.paths.append(path)
        self.late: deque[float] = deque(maxlen=LATENESS_SAMPLES)
        self.late_max = 0.0
        self.started = time.monotonic()
        self._stop = False
        self._outq: list[bytearray] = [bytearray(), bytearray()]

    @property
    def master_path(self) -> str:
        return self.paths[MASTER]

    @property
    def slave_path(self) -> str:
        return self.paths[SLAVE]

    def stop(self) -> None:
        self._stop = True

    def snapshot(self) -> dict:
        lat = sorted(self.late)
        req = sorted(self.line.master_late)

        def q(p: float, lat: list[float] = lat) -> float | None:
            return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else None
        d = self.line.stats.as_dict()
        d.update({f"request_late_{k}_s": q(p, req) for k, p in
                  (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))})
        d["request_late_share"] = sum(x > 0 for x in req) / len(req) if req else None
        d.update({"t": time.monotonic(), "started": self.started,
                  "baudrate": self.line.spec.baudrate, "bits": self.line.spec.bits,
                  "turnaround_s": self.line.spec.turnaround_s, "t35_s": self.line.spec.t35_s,
                  "frame_end_late_p50_s": q(0.5), "frame_end_late_p99_s": q(0.99),
                  "frame_end_late_max_s": self.late_max})
        return d

    def _write(self, side: int) -> None:
        buf = self._outq[side]
        while buf:
            try:
                n = os.write(self.fds[side], buf)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EAGAIN):
                    buf.clear()   # nobody on that end: a real line drops it too
                    return
                raise
            del buf[:n]

    def serve(self, stats_path: str | None = None, stats_every_s: float = 0.5,
              until: float | None = None) -> None:
        _fine_timers()
        line = self.line
        next_stats = time.monotonic()
        wake: float | None = None
        while not self._stop:
            now = time.monotonic()
            if until is not None and now >= until:
                break
            timeout = 0.2 if wake is None else max(0.0, wake - now)
            if stats_path:
                timeout = min(timeout, max(0.0, next_stats - now))
            want_w = [self.fds[s] for s in (MASTER, SLAVE) if self._outq[s]]
            try:
                r, w, _ = select.select(self.fds, want_w, [], timeout)
            except InterruptedError:
                continue
            now = time.monotonic()
            for side in (MASTER, SLAVE):
                if self.fds[side] in r:
                    try:
                        data = os.read(self.fds[side], 4096)
                    except (BlockingIOError, InterruptedError):
                        data = b""
                    except OSError as exc:
                        if exc.errno != errno.EIO:   # EIO: nobody has the far end open
                            raise
                        data = b""
                        time.sleep(0.01)
                    if data:
                        line.offer(side, data, now)
            out, wake = line.step(now)
            for to, data, due, final in out:
                if final:
                    # how late a frame's last byte reached the far side
                    late = now - due
                    self.late.append(late)
                    self.late_max = max(self.late_max, late)
                self._outq[to].extend(data)
            for side in (MASTER, SLAVE):
                if self._outq[side]:
                    self._write(side)
            if stats_path and now >= next_stats:
                _write_json(stats_path, self.snapshot())
                next_stats = now + stats_every_s
        if stats_path:
            _write_json(stats_path, self.snapshot())

    def close(self) -> None:
        for fd in self.fds + self.keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
    os.replace(tmp, path)


def _link(path: str, target: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.symlink(target, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulators.wire", description=__doc__.split("\n\n")[0])
    p.add_argument("--baud", type=int, default=9600)
    p.add_argument("--bits", type=int, default=11, help="bits per character: 10 (8N1) or 11 (8E1, 8N2)")
    p.add_argument("--turnaround-ms", type=float, default=0.0, help="slave think time before an answer")
    p.add_argument("--chunk-ms", type=float, default=DEFAULT_CHUNK_S * 1000)
    p.add_argument("--dir", help="make links DIR/tty-master (the gateway's end) and DIR/tty-slave")
    p.add_argument("--stats", help="rewrite counters to this JSON file twice a second")
    p.add_argument("--nice", type=int, default=0, help="lower (negative) niceness for steadier timing")
    p.add_argument("--realtime", action="store_true",
                   help="SCHED_FIFO (needs root; falls back to --nice): on a busy machine the "
                        "emulator then wakes on time. It sleeps between bytes, and the kernel's RT "
                        "throttling keeps 5 %% of each core for others anyway")
    a = p.parse_args(argv)
    spec = LineSpec(a.baud, a.bits, a.turnaround_ms / 1000)
    emu = WireEmulator(spec, a.chunk_ms / 1000)
    sched = "normal"
    if a.realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            sched = "fifo"
        except (OSError, AttributeError):
            pass
    if a.nice and sched == "normal":
        try:
            os.nice(a.nice)
            sched = f"nice {a.nice}"
        except OSError:
            pass
    where = {"master": emu.master_path, "slave": emu.slave_path}
    if a.dir:
        os.makedirs(a.dir, exist_ok=True)
        where = {"master": os.path.join(a.dir, "tty-master"), "slave": os.path.join(a.dir, "tty-slave")}
        _link(where["master"], emu.master_path)
        _link(where["slave"], emu.slave_path)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: emu.stop())
    # a measuring window starts: the request lateness is counted afresh
    signal.signal(signal.SIGUSR1, lambda *_: emu.line.master_late.clear())
    print(json.dumps({**where, "baudrate": spec.baudrate, "bits": spec.bits, "sched": sched,
                      "t35_s": spec.t35_s, "char_s": spec.char_s}), flush=True)
    try:
        emu.serve(a.stats)
    finally:
        emu.close()
        if a.dir:
            for path in where.values():
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
