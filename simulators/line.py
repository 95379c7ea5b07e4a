"""The timing model of an RS-485 line, pure: times are passed in, so it is
tested by asserting the schedule it computes, not by sleeping. The emulator
that drives it with real ptys is simulators/wire.py, which says what a real
line allows and why a plain pty pair cannot show it."""
from __future__ import annotations

import math
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
# How many of the master's latest frames keep their lateness (a bench window's worth).
LATENESS_SAMPLES = 8192



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
        # per master frame: its arrival less the earliest it could start
        # (> 0: the free line waited for it; < 0: it came early and was held)
        self.master_late: deque[float] = deque(maxlen=LATENESS_SAMPLES)

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
                if f.side == MASTER:
                    self.master_late.append(f.arrival - earliest)
            if st.first is None:
                st.first = start
            self.active = f
