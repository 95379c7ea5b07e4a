"""Hypothesis fuzzing of the RTU frame parser and the port's framing."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from miu import regs
from miu.crc import crc16
from miu.rtu import RtuPort, RtuSlave
from miu.sim import SimMeter

UNIT = 7


def make_slave() -> tuple[SimMeter, RtuSlave]:
    m = SimMeter()
    m.credit(20_000)
    m.command(regs.CMD_OPEN_VALVE)
    return m, RtuSlave(UNIT, m.core)


def with_crc(body: bytes) -> bytes:
    c = crc16(body)
    return body + bytes([c & 0xFF, c >> 8])


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame, len(frame) - 2) == frame[-2] | (frame[-1] << 8)


FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_crash_and_bad_crc_never_answered(data):
    _, slave = make_slave()
    resp = slave.handle(data)
    if not crc_ok(data):
        assert resp is None


@FUZZ
@given(st.binary(min_size=4, max_size=300), st.integers(0, 15))
def test_corrupted_valid_frame_never_answered(body, bit):
    # A frame with a correct CRC, then one bit flipped anywhere in it.
    _, slave = make_slave()
    frame = bytearray(with_crc(bytes([UNIT]) + body[1:]))
    i = bit % len(frame)
    frame[i] ^= 1 << (bit % 8)
    assert not crc_ok(bytes(frame))
    assert slave.handle(bytes(frame)) is None


@FUZZ
@given(st.sampled_from([0, UNIT, 8, 247, 255]),
       st.sampled_from([1, 3, 4, 5, 6, 15, 16, 43, 0x2B, 0x83, 0xFF]),
       st.binary(max_size=260))
def test_frames_with_valid_crc_get_a_well_formed_answer_or_none(unit, fc, payload):
    _, slave = make_slave()
    frame = with_crc(bytes([unit, fc]) + payload)
    resp = slave.handle(frame)
    if unit != UNIT or len(frame) > 256:
        assert resp is None
        return
    assert resp is not None
    assert crc_ok(resp)
    assert resp[0] == UNIT
    assert resp[1] in (fc, (fc | 0x80) & 0xFF)
    if resp[1] != fc or fc & 0x80:
        assert len(resp) == 5 and resp[2] in (1, 2, 3, 4)


@FUZZ
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.sampled_from([3, 4]))
def test_reads_answer_data_or_exception(start, count, fc):
    _, slave = make_slave()
    body = bytes([UNIT, fc, start >> 8, start & 0xFF, count >> 8, count & 0xFF])
    resp = slave.handle(with_crc(body))
    assert resp is not None and crc_ok(resp)
    if resp[1] == fc:
        assert 1 <= count <= 125 and resp[2] == 2 * count and len(resp) == 5 + 2 * count
    else:
        assert resp[2] == (3 if not 1 <= count <= 125 else 2)


@FUZZ
@given(st.integers(0, 0xFFFF), st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=10))
def test_writes_never_crash_the_core(start, values):
    m, slave = make_slave()
    n = len(values)
    body = bytes([UNIT, 16, start >> 8, start & 0xFF, 0, n, 2 * n])
    for v in values:
        body += bytes([v >> 8, v & 0xFF])
    resp = slave.handle(with_crc(body))
    assert resp is not None and crc_ok(resp)
    m.advance(1_000)
    assert all(m.core.read_input(a) is not None for a in range(20))


class StreamUart:
    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.rx = bytearray()
        self.sent = []

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes):
        n = min(nbytes, len(self.rx))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, buf):
        self.sent.append(bytes(buf))
        return len(buf)

    def txdone(self):
        return True


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=80), st.integers(0, 8)), max_size=20))
def test_port_survives_any_stream(chunks):
    m, slave = make_slave()
    uart = StreamUart(chunks)
    port = RtuPort(uart, slave, m.hal, baud=9600)
    for data, gap_ms in chunks:
        uart.rx += data
        for _ in range(gap_ms):
            m.hal.advance(1)
            port.poll()
    for _ in range(10):
        m.hal.advance(1)
        port.poll()
    for resp in uart.sent:
        assert crc_ok(resp) and resp[0] == UNIT
