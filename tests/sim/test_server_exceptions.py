"""What a third-party master sees from the simulator's real pymodbus server
on a pseudo-terminal, byte for byte: the exception answers of the Modbus
application protocol spec (a quantity outside 1..125 is exception 03, an
address outside the map is exception 02, both with function byte 0x80 | fc)."""
from __future__ import annotations

import pytest

from tests.support import RawLine, rtu_frame, start_sim, stop_proc

pytestmark = pytest.mark.integration

SCENARIO = """
[simulator]
seed = 1

[[bus]]
name = "b"
kind = "pty"
link = "ttyEXC"

[[device]]
bus = "b"
unit = 1
model = "turbine-evc"
name = "fm-01"

[[device]]
bus = "b"
unit = 2
model = "gas-alarm"
name = "ga-1"
"""


@pytest.fixture(scope="module")
def line(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("exc")
    sim, where = start_sim(tmp, SCENARIO)
    raw = RawLine(where["buses"]["b"])
    yield raw
    raw.close()
    stop_proc(sim)


def read_req(unit: int, fc: int, address: int, count: int) -> bytes:
    return rtu_frame(bytes([unit, fc]) + address.to_bytes(2, "big") + count.to_bytes(2, "big"))


@pytest.mark.parametrize("fc", [3, 4])
@pytest.mark.parametrize("count", [126, 0, 0x7FFF, 0xFFFF])
def test_quantity_outside_1_to_125_is_exception_03(line, fc, count):
    assert line.ask(read_req(1, fc, 0, count)) == rtu_frame(bytes([1, 0x80 | fc, 3]))


def test_125_registers_from_a_mapped_start_is_not_exception_03(line):
    # 0..125 covers registers the turbine does not map: exception 02, not 03.
    assert line.ask(read_req(1, 3, 0, 125)) == rtu_frame(bytes([1, 0x83, 2]))


def test_address_outside_the_map_is_exception_02(line):
    assert line.ask(read_req(1, 3, 0x1000, 10)) == rtu_frame(bytes([1, 0x83, 2]))
    assert line.ask(read_req(1, 3, 0xFFFF, 2)) == rtu_frame(bytes([1, 0x83, 2]))
    assert line.ask(read_req(1, 4, 0, 1)) == rtu_frame(bytes([1, 0x84, 2]))  # no input table


def test_a_good_read_still_answers_registers(line):
    reply = line.ask(read_req(2, 4, 0, 16))
    assert reply[:3] == bytes([2, 4, 32]) and reply == rtu_frame(reply[:-2])
