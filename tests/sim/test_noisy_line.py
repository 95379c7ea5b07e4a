"""The noisy line, seen from the master's side of a real pseudo-terminal:
the simulator process (real pymodbus server behind the relay) answers a
scripted sequence of faults, and each answer is checked byte for byte."""
from __future__ import annotations

import time

import pytest

from simulators import hostile
from simulators.rtu import crc_ok, frame
from tests.support import RawLine, rtu_frame, start_sim, stop_proc

pytestmark = pytest.mark.integration

SCRIPT = ["ok", "wrong_function", "wrong_unit", "lying_count", "lying_count", "lying_count",
          "lying_count", "double", "late", "silence", "bit_flip", "drop_byte", "garbage", "truncate", "ok"]

SCENARIO = f"""
[simulator]
seed = 5

[[bus]]
name = "b"
kind = "pty"
link = "ttyNOISE"

[[device]]
bus = "b"
unit = 7
model = "gas-alarm"
name = "ga-7"
values = {{ power_lamp = 1 }}
noise = {{ late_s = 0.6, double_gap_s = 0.05 }}
noise_script = {SCRIPT!r}

[[device]]
bus = "b"
unit = 8
model = "gas-alarm"
name = "ga-8"
malicious = true
""".replace("'", '"')

REQ = rtu_frame(bytes([7, 4, 0, 0, 0, 16]))


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("noise")
    sim, where = start_sim(tmp, SCENARIO)
    line = RawLine(where["buses"]["b"])
    try:
        got = []
        for _ in SCRIPT:
            t0 = time.monotonic()
            reply = line.ask(REQ, quiet_s=0.15, timeout=1.0)
            got.append((time.monotonic() - t0, reply))
        evil = [line.ask(rtu_frame(bytes([8, 4, 0, 0, 0, 16])), quiet_s=0.15) for _ in range(5)]
    finally:
        line.close()
        stop_proc(sim)
    log = (tmp / "sim.log").read_text()
    return dict(enumerate(got)), evil, log


def test_each_scripted_fault_in_turn(answers):
    got, _evil, log = answers
    good = got[0][1]
    assert good[:3] == bytes([7, 4, 32]) and crc_ok(good) and len(good) == 37
    data = good[3:-2]

    assert got[1][1] == frame(bytes([7, 3, 32]) + hostile.poison(data))          # FC03 answering FC04
    assert got[2][1] == frame(bytes([8, 4, 32]) + hostile.poison(data))          # unit 8 answering for 7
    lies = [got[i][1] for i in (3, 4, 5, 6)]
    assert [x[2] for x in lies] == [30, 34, 33, 31]                              # short, long, odd, odd
    assert all(crc_ok(x) and len(x) == 5 + x[2] for x in lies)
    first, second = got[7][1][:37], got[7][1][37:]                               # double answer
    assert first == good and second == frame(bytes([7, 4, 32]) + hostile.poison(data))
    delay, late = got[8]
    assert late == good and delay >= 0.6                                         # after the master's timeout
    assert got[9][1] == b""                                                      # silence
    flipped = got[10][1]
    assert len(flipped) == 37 and not crc_ok(flipped) and \
        sum(bin(a ^ b).count("1") for a, b in zip(flipped, good, strict=True)) == 1
    assert len(got[11][1]) == 36 and not crc_ok(got[11][1])                      # one byte lost
    assert good in got[12][1] and 38 <= len(got[12][1]) <= 45                   # garbage around it
    assert 1 <= len(got[13][1]) < 37 and good.startswith(got[13][1])             # truncated
    assert got[14][1] == good                                                    # script over: clean


def test_a_malicious_slave_never_answers_straight(answers):
    _got, evil, log = answers
    for reply in evil:
        assert reply and crc_ok(reply[:5 + reply[2]] if reply[1] in (3, 4) else reply)
    assert evil[0][:2] == bytes([8, 3])                   # wrong function
    assert evil[1][:2] == bytes([9, 4])                   # wrong unit
    assert evil[2][:3] == bytes([8, 4, 30])               # lying count
    assert len(evil[3]) == 2 * 37                         # double answer
    assert evil[4][:2] == bytes([8, 3])                   # and round again


def test_what_was_injected_is_logged_at_the_end(answers):
    *_, log = answers
    assert "noise ga-7 (unit 7): {'bit_flip': 1, 'double': 1, 'drop_byte': 1, 'garbage': 1, " \
           "'late': 1, 'lying_count': 4, 'ok': 2, 'silence': 1, 'truncate': 1, 'wrong_function': 1, " \
           "'wrong_unit': 1}" in log
    assert "noise ga-8 (unit 8): {'double': 1, 'lying_count': 1, 'wrong_function': 2, 'wrong_unit': 1}" in log
