"""The wire emulator's timing arithmetic and framing, checked on the schedule
it computes (times passed in), never by timing the test itself. The one pty
test asserts only a lower bound on elapsed time, which a slow machine cannot
break."""
from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest

from simulators.line import (
    FIXED_T35_S,
    MASTER,
    MAX_FRAME_BYTES,
    SLAVE,
    Line,
    LineSpec,
    char_bits,
)
from simulators.wire import WireEmulator

REQ = bytes([1, 3, 0, 0, 0, 28, 0x44, 0x03])          # read 28 holding registers of unit 1
RESP = bytes([1, 3, 56]) + bytes(56) + b"\x00\x00"   # 5 + 2 * 28 bytes


def drain(line: Line, now: float) -> list[tuple[int, bytes, float, bool]]:
    out, _ = line.step(now)
    return out


def test_bits_per_character():
    assert char_bits(8, "N", 1) == 10
    assert char_bits(8, "E", 1) == 11
    assert char_bits(8, "O", 1) == 11
    assert char_bits(8, "N", 2) == 11


def test_char_time_and_t35():
    s = LineSpec(9600, 11)
    assert s.char_s == pytest.approx(11 / 9600)
    assert s.t35_s == pytest.approx(3.5 * 11 / 9600)
    # 19200 is still timed in characters; above it the timer is fixed
    assert LineSpec(19200, 11).t35_s == pytest.approx(3.5 * 11 / 19200)
    assert LineSpec(38400, 11).t35_s == FIXED_T35_S
    assert LineSpec(115200, 10).t35_s == FIXED_T35_S


def test_read_cost_matches_the_design_figures():
    # DESIGN.md: at 9600 baud 8N1 about 42 ms for N=10 and 282 ms for N=125
    s = LineSpec(9600, 10)
    assert s.read_s(10) == pytest.approx(0.042, abs=0.0005)
    assert s.read_s(125) == pytest.approx(0.282, abs=0.001)
    t = LineSpec(9600, 11, turnaround_s=0.002)
    assert t.read_s(28) == pytest.approx((8 + 61) * 11 / 9600 + 2 * 3.5 * 11 / 9600 + 0.002)
    assert t.plan_s([28, 28]) == pytest.approx(2 * t.read_s(28))


def test_bad_spec_is_refused():
    with pytest.raises(ValueError):
        LineSpec(0, 11)
    with pytest.raises(ValueError):
        LineSpec(9600, 11, turnaround_s=-1)


def test_no_byte_is_released_before_its_last_bit():
    s = LineSpec(9600, 11)
    line = Line(s, chunk_s=0.0)
    line.offer(MASTER, REQ, 0.0)
    got = bytearray()
    now = 0.0
    while len(got) < len(REQ):
        out, wake = line.step(now)
        for to, data, due, _final in out:
            assert to == SLAVE
            assert due <= now + 1e-12
            got += data
            # every byte released so far had finished its last bit
            assert len(got) * s.char_s <= now + 1e-9
        if len(got) < len(REQ):
            assert wake is not None and wake > now
            now = wake
    assert bytes(got) == REQ
    assert now == pytest.approx(len(REQ) * s.char_s)
    assert line.step(now) == ([], None)          # idle: nothing more to wake for


def test_request_answer_request_schedule():
    s = LineSpec(9600, 11, turnaround_s=0.002)
    cs = s.char_s
    line = Line(s)
    line.offer(MASTER, REQ, 0.0)
    out = drain(line, 8 * cs)
    assert b"".join(d for _to, d, _due, _f in out) == REQ and out[-1][3] is True
    # the slave answers at once: the line makes it wait t3.5 + turnaround
    line.offer(SLAVE, RESP, 8 * cs)
    start = 8 * cs + s.t35_s + s.turnaround_s
    assert drain(line, start) == []
    _out, wake = line.step(start)
    assert wake == pytest.approx(start + cs)
    end = start + len(RESP) * cs
    assert drain(line, end - cs / 2)[-1][3] is False
    out = drain(line, end)
    assert out and out[-1][0] == MASTER and out[-1][3] is True
    # the master asks again at once: t3.5 of silence first
    line.offer(MASTER, REQ, end)
    nxt = end + s.t35_s
    assert drain(line, nxt) == []
    out = drain(line, nxt + len(REQ) * cs)
    assert b"".join(d for _to, d, _due, _f in out) == REQ
    st = line.stats
    assert st.frames == [2, 1]
    assert st.busy_s == pytest.approx((2 * len(REQ) + len(RESP)) * cs)
    assert st.gap_s == pytest.approx(2 * s.t35_s + s.turnaround_s)
    assert st.waited_s == [0.0, 0.0]
    assert st.by_unit[1] == 2
    assert st.overlaps == 0
    # three exchanges' worth of the plan formula, less the last silence and answer
    assert nxt + len(REQ) * cs == pytest.approx(s.read_s(28) + len(REQ) * cs)


def test_a_late_master_is_counted_as_waiting():
    s = LineSpec(19200, 11)
    line = Line(s)
    line.offer(MASTER, REQ, 0.0)
    drain(line, 1.0)
    line.offer(MASTER, REQ, 1.0)        # the line was free since 8 cs + t3.5
    drain(line, 2.0)
    assert line.stats.waited_s[MASTER] == pytest.approx(1.0 - 8 * s.char_s - s.t35_s)
    assert list(line.master_late) == [pytest.approx(1.0 - 8 * s.char_s - s.t35_s)]


def test_an_early_request_is_held_and_its_lead_recorded():
    s = LineSpec(9600, 11)
    line = Line(s)
    line.offer(MASTER, REQ, 0.0)
    end = len(REQ) * s.char_s
    drain(line, end)
    line.offer(MASTER, REQ, end + 0.001)        # 3 ms before t3.5 is over
    assert drain(line, end + s.t35_s) == []
    assert list(line.master_late) == [pytest.approx(0.001 - s.t35_s)]
    assert line.stats.waited_s[MASTER] == 0.0


def test_bytes_written_while_the_frame_is_on_the_wire_continue_it():
    s = LineSpec(9600, 10)
    line = Line(s)
    line.offer(MASTER, REQ[:4], 0.0)
    line.offer(MASTER, REQ[4:], 2 * s.char_s)       # first half still going out
    out = drain(line, 1.0)
    assert b"".join(d for _to, d, _due, _f in out) == REQ
    assert line.stats.frames == [1, 0]
    assert line.stats.busy_s == pytest.approx(8 * s.char_s)


def test_bytes_written_after_the_frame_ended_start_a_new_one():
    s = LineSpec(9600, 10)
    line = Line(s)
    line.offer(MASTER, REQ[:4], 0.0)
    drain(line, 4 * s.char_s)
    line.offer(MASTER, REQ[4:], 5 * s.char_s)
    out, wake = line.step(5 * s.char_s)
    assert out == []
    assert wake == pytest.approx(4 * s.char_s + s.t35_s + s.char_s)
    drain(line, 1.0)
    assert line.stats.frames == [2, 0]


def test_half_duplex_talking_over_is_queued_and_counted():
    s = LineSpec(9600, 11, turnaround_s=0.001)
    line = Line(s)
    line.offer(MASTER, REQ, 0.0)
    line.offer(SLAVE, RESP, 1 * s.char_s)           # a slave that does not wait
    assert line.stats.overlaps == 1
    out = drain(line, 8 * s.char_s)
    assert all(to == SLAVE for to, *_ in out)       # only the request so far
    start = 8 * s.char_s + s.t35_s + s.turnaround_s
    out = drain(line, start + len(RESP) * s.char_s)
    assert b"".join(d for to, d, _due, _f in out if to == MASTER) == RESP


def test_a_runaway_frame_is_cut_at_the_bound():
    line = Line(LineSpec(115200, 10))
    line.offer(MASTER, bytes(MAX_FRAME_BYTES + 10), 0.0)
    assert line.stats.dropped == 10


def test_through_real_ptys_no_faster_than_the_wire():
    spec = LineSpec(19200, 11, turnaround_s=0.001)
    emu = WireEmulator(spec)
    th = threading.Thread(target=emu.serve, kwargs={"until": time.monotonic() + 20}, daemon=True)
    th.start()
    m = os.open(emu.master_path, os.O_RDWR | os.O_NOCTTY)
    s = os.open(emu.slave_path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(m)
        tty.setraw(s)

        def read(fd: int, n: int) -> bytes:
            buf = b""
            deadline = time.monotonic() + 5
            while len(buf) < n and time.monotonic() < deadline:
                r, _, _ = select.select([fd], [], [], 0.5)
                if r:
                    buf += os.read(fd, n - len(buf))
            return buf
        t0 = time.monotonic()
        for _ in range(5):
            os.write(m, REQ)
            assert read(s, len(REQ)) == REQ
            os.write(s, RESP)
            assert read(m, len(RESP)) == RESP
        elapsed = time.monotonic() - t0
        assert elapsed >= 5 * spec.read_s(28) - spec.t35_s
        # nothing echoed back: each side got only the other's bytes
        assert not select.select([m, s], [], [], 0.05)[0]
    finally:
        emu.stop()
        th.join(5)
        os.close(m)
        os.close(s)
        emu.close()
    snap = emu.snapshot()
    assert snap["frames_master"] == 5 and snap["frames_slave"] == 5
    assert snap["requests_by_unit"] == {"1": 5}
