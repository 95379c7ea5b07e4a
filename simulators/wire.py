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
`--stats FILE` rewrites the counters there twice a second (JSON).
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import math
import os
import select
import signal
import sys
import time
import tty
from collections import Counter, deque
from dataclasses import dataclass, field

MASTER, SLAVE = 0, 1
# Modbus over serial line, 2.5.1.1: above 19200 baud the timers are fixed.
FIXED_T35_S = 0.00175
FIXED_ABOVE_BAUD = 19200
# Bytes released within this much of each other go out in one write: fewer
# wake-ups at high baud rates, at the cost of delivering a byte up to this
# late (never early). The last byte of a frame is always released on time.
DEFAULT_CHUNK_S = 0.001
# Bounds on what one frame and one queue may hold: a runaway writer is cut.
MAX_FRAME_BYTES = 4096
MAX_PENDING_FRAMES = 64
LATENESS_SAMPLES = 4096


def char_bits(bytesize: int = 8, parity: str = "E", stopbits: int = 1) -> int:
    """Bits per character: start + data + parity + stop."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


@dataclass(frozen=True)
class LineSpec:
    baudrate: int = 9600
    bits: int = 11                 # per character: 10 for 8N1, 11 for 8E1 / 8N2
    turnaround_s: float = 0.0      # slave's think time before it answers

    def __post_init__(self) -> None:
        if self.baudrate <= 0 or not 7 <= self.bits <= 12 or self.turnaround_s < 0:
            raise ValueError(f"bad line spec {self}")

    @property
    def char_s(self) -> float:
        return self.bits / self.baudrate

    @property
    def t35_s(self) -> float:
        return FIXED_T35_S if self.baudrate > FIXED_ABOVE_BAUD else 3.5 * self.char_s

    def frame_s(self, nbytes: int) -> float:
        return nbytes * self.char_s

    def read_s(self, count: int) -> float:
        """Wire time of one FC3/FC4 read of `count` registers: request (8
        bytes), t3.5, turnaround, response (5 + 2N bytes), t3.5."""
        return self.frame_s(8) + self.t35_s + self.turnaround_s + self.frame_s(5 + 2 * count) + self.t35_s

    def plan_s(self, counts) -> float:
        """Wire time of a sequence of reads (register counts)."""
        return sum(self.read_s(c) for c in counts)


@dataclass
class Frame:
    side: int
    arrival: float                 # when its first byte was offered
    data: bytearray
    start: float = 0.0             # when its first bit went on the wire
    sent: int = 0                  # bytes already released to the far side

    def end(self, char_s: float) -> float:
        return self.start + len(self.data) * char_s


@dataclass
class Stats:
    frames: list = field(default_factory=lambda: [0, 0])       # by side
    bytes: list = field(default_factory=lambda: [0, 0])
    busy_s: float = 0.0            # characters on the wire
    gap_s: float = 0.0             # silences and turnarounds the line required
    waited_s: list = field(default_factory=lambda: [0.0, 0.0])  # line free, side not ready
    overlaps: int = 0              # a side talked over the other (queued here)
    dropped: int = 0               # bytes cut by the bounds
    first: float | None = None     # first frame start
    last: float | None = None      # last frame end
    by_unit: Counter = field(default_factory=Counter)  # master frames per unit id
    last_by_unit: dict = field(default_factory=dict)   # start of each unit's latest master frame

    def as_dict(self) -> dict:
        return {"frames_master": self.frames[MASTER], "frames_slave": self.frames[SLAVE],
                "bytes_master": self.bytes[MASTER], "bytes_slave": self.bytes[SLAVE],
                "busy_s": self.busy_s, "gap_s": self.gap_s,
                "master_wait_s": self.waited_s[MASTER], "slave_wait_s": self.waited_s[SLAVE],
                "overlaps": self.overlaps, "dropped": self.dropped,
                "first": self.first, "last": self.last,
                "requests_by_unit": {str(k): v for k, v in sorted(self.by_unit.items())},
                "last_request_by_unit": {str(k): v for k, v in sorted(self.last_by_unit.items())}}


class Line:
    """The half-duplex line as a schedule. Call `offer` when a side writes,
    `step(now)` to collect what the far sides may receive by `now`."""

    def __init__(self, spec: LineSpec, chunk_s: float = DEFAULT_CHUNK_S) -> None:
        self.spec = spec
        self.chunk_s = chunk_s
        self.active: Frame | None = None
        self.pending: deque[Frame] = deque()
        self.idle_from = -math.inf
        self.last_side: int | None = None
        self.stats = Stats()

    def offer(self, side: int, data: bytes, now: float) -> None:
        a = self.active
        if a is not None and a.side == side and now < a.end(self.spec.char_s):
            target: bytearray | None = a.data          # still talking: same frame
        elif self.pending and self.pending[-1].side == side:
            target = self.pending[-1].data              # waiting its turn: same frame
        else:
            if (a is not None and a.side != side) or any(f.side != side for f in self.pending):
                self.stats.overlaps += 1
            if len(self.pending) >= MAX_PENDING_FRAMES:
                self.stats.dropped += len(data)
                return
            self.pending.append(Frame(side, now, bytearray()))
            target = self.pending[-1].data
        room = MAX_FRAME_BYTES - len(target)
        if len(data) > room:
            self.stats.dropped += len(data) - room
            data = data[:room]
        target.extend(data)

    def earliest_start(self, side: int) -> float:
        """When a frame from `side` may start, given the last frame's end."""
        gap = self.spec.t35_s
        if side == SLAVE and self.last_side == MASTER:
            gap += self.spec.turnaround_s
        return self.idle_from + gap

    def step(self, now: float) -> tuple[list[tuple[int, bytes, float, bool]], float | None]:
        """Release what is due by `now`: a list of (to_side, bytes, due time
        of the last of them, whether it ends its frame), and the time of the
        next release (None when the line is idle)."""
        out: list[tuple[int, bytes, float, bool]] = []
        cs = self.spec.char_s
        st = self.stats
        while True:
            a = self.active
            if a is not None:
                n = len(a.data)
                # small epsilon: a byte due now must not wait for the next turn
                done = min(n, int((now - a.start) / cs + 1e-9))
                if done > a.sent:
                    out.append((1 - a.side, bytes(a.data[a.sent:done]), a.start + done * cs, done == n))
                    a.sent = done
                if a.sent < n:
                    nxt = a.start + (a.sent + 1) * cs
                    return out, min(a.end(cs), max(nxt, now + self.chunk_s))
                end = a.end(cs)
                st.frames[a.side] += 1
                st.bytes[a.side] += n
                st.busy_s += n * cs
                st.last = end
                if a.side == MASTER and n:
                    st.by_unit[a.data[0]] += 1
                    st.last_by_unit[a.data[0]] = a.start
                self.idle_from, self.last_side, self.active = end, a.side, None
                continue
            if not self.pending:
                return out, None
            f = self.pending[0]
            earliest = self.earliest_start(f.side)
            start = max(f.arrival, earliest)
            if start > now:
                return out, start + cs
            self.pending.popleft()
            f.start = start
            if earliest > -math.inf:
                st.gap_s += earliest - self.idle_from
                # The line was free and this side had nothing to say: time
                # lost to the master (gateway overhead) or to a slow slave.
                st.waited_s[f.side] += max(0.0, f.arrival - earliest)
            if st.first is None:
                st.first = start
            self.active = f


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

        def q(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(len(lat) * p))] if lat else None
        d = self.line.stats.as_dict()
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
