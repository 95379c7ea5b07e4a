"""RTU slave: exact response bytes (hand-written hex), silence rules, t3.5 framing, DE pin."""

import pytest
from pymodbus.framer.rtu import FramerRTU

from miu import regs
from miu.rtu import RtuPort, RtuSlave, t35_us
from miu.sim import SimHal, SimMeter


def h(s: str) -> bytes:
    return bytes.fromhex(s.replace(" ", ""))


@pytest.fixture
def meter() -> SimMeter:
    # Known state: 20 m3 bought, valve open, one minute at 6 m3/h (10 pulses of 10 L).
    m = SimMeter()
    m.credit(20_000)
    m.command(regs.CMD_OPEN_VALVE)
    m.run_flow(6.0, 60_000)
    return m


@pytest.fixture
def slave(meter) -> RtuSlave:
    return RtuSlave(7, meter.core)


# Request -> response, both complete frames with CRC (low byte first).
EXACT = [
    # FC04 input 0..15: volume 100 L, balance 19900 L (0x4DBC), battery 3600 mV,
    # valve open, status 0, error 0, cards 0 0, flow 6.000 m3/h (0x1770),
    # 0 days, 10 pulses, model 1001 (0x03E9), firmware 100.
    ("07 04 0000 0010 f1a0",
     "07 04 20 0000 0064 0000 4dbc 0e10 0000 0000 0000 0000 0000 1770 0000 0000 000a 03e9 0064 673b"),
    # FC03 on 0..1 mirrors FC04.
    ("07 03 0000 0002 c46d", "07 03 04 0000 0064 9dd8"),
    # FC03 parameters 101..106: 10.00 L, 30 d, 90 d, 6.000 m3/h, 5.000 m3, 3.300 V.
    ("07 03 0065 0006 d5b1", "07 03 0c 03e8 001e 005a 1770 1388 0ce4 d479"),
    # FC03 command and credit registers read 0.
    ("07 03 0064 0001 c5b3", "07 03 02 0000 3044"),
    ("07 03 006b 0002 b5b1", "07 03 04 0000 0000 9c33"),
    # FC06 max flow = 8.000 m3/h: echo.
    ("07 06 0068 1f40 01b0", "07 06 0068 1f40 01b0"),
    # FC16 no-signal / dead-meter days = 10, 20.
    ("07 10 0066 0002 04 000a 0014 4b28", "07 10 0066 0002 a1b1"),
    # FC16 credit 100000 L (0x000186A0).
    ("07 10 006b 0002 04 0001 86a0 9964", "07 10 006b 0002 3072"),
    # FC06 command: close the valve.
    ("07 06 0064 a5c3 f372", "07 06 0064 a5c3 f372"),
    # FC43/14 basic stream: vendor "edgegw", product code "MIU-1001", revision "1.00".
    ("07 2b 0e 01 00 f877",
     "07 2b 0e 01 81 00 00 03 00 06 656467656777 01 08 4d49552d31303031 02 04 312e3030 ce92"),
    # FC43/14 individual access, object 1.
    ("07 2b 0e 04 01 3ae7", "07 2b 0e 04 81 00 00 01 01 08 4d49552d31303031 fb3f"),
    # FC43/14 regular stream from an unknown object restarts at 0.
    ("07 2b 0e 02 07 b945",
     "07 2b 0e 02 81 00 00 03 00 06 656467656777 01 08 4d49552d31303031 02 04 312e3030 8e90"),
    # Exceptions. 01 illegal function: FC01, FC05, FC17, and a MEI type other than 14.
    ("07 01 0000 0001 fdac", "07 81 01 6191"),
    ("07 05 0000 ff00 8c5c", "07 85 01 6351"),
    ("07 11 c38c", "07 91 01 6c51"),
    ("07 2b 0d 01 00 0877", "07 ab 01 7ef1"),
    # 02 illegal address: past the input map, a hole, read-only mirror, half a credit.
    ("07 04 0014 0001 71a8", "07 84 02 22c0"),
    ("07 03 0013 0002 35a8", "07 83 02 20f0"),
    ("07 03 0063 0002 3473", "07 83 02 20f0"),
    ("07 06 0000 0001 486c", "07 86 02 23a0"),
    ("07 10 006b 0001 02 0001 44eb", "07 90 02 2dc0"),
    ("07 2b 0e 04 05 3b24", "07 ab 02 3ef0"),
    # 03 illegal value: count 0 and 126, unknown command, 0 L per pulse,
    # byte count not 2 x count, wrong length, bad device-id code.
    ("07 03 0000 0000 45ac", "07 83 03 e130"),
    ("07 03 0000 007e c58c", "07 83 03 e130"),
    ("07 06 0064 1234 c504", "07 86 03 e260"),
    ("07 06 0065 0000 99b3", "07 86 03 e260"),
    ("07 10 0066 0002 03 000a 0014 fee8", "07 90 03 ec00"),
    ("07 04 0000 0001 00 6dd4", "07 84 03 e300"),
    ("07 2b 0e 05 00 fab7", "07 ab 03 ff30"),
]


@pytest.mark.parametrize("request_hex,response_hex", EXACT)
def test_exact_response(slave, request_hex, response_hex):
    assert slave.handle(h(request_hex)) == h(response_hex)


@pytest.mark.parametrize("request_hex,response_hex", EXACT)
def test_hand_written_crcs_agree_with_pymodbus(request_hex, response_hex):
    # An independent CRC implementation checks the hex above.
    for frame in (h(request_hex), h(response_hex)):
        crc = FramerRTU.compute_CRC(frame[:-2])
        assert frame[-2:] == crc.to_bytes(2, "big")


def test_writes_took_effect(slave, meter):
    slave.handle(h("07 06 0068 1f40 01b0"))
    slave.handle(h("07 10 006b 0002 04 0001 86a0 9964"))
    assert meter.core.read_holding(104) == 8000
    assert meter.core.balance_l == 119_900


def test_fault_card_over_rtu_clears_fault(slave, meter):
    meter.hal.magnet = True
    meter.advance(2_000)
    meter.hal.magnet = False
    assert slave.handle(h("07 04 0006 0002 91ac")) == h("07 04 04 0101 0001 0c78")
    assert slave.handle(h("07 06 0064 a5c1 72b3")) == h("07 06 0064 a5c1 72b3")
    assert slave.handle(h("07 04 0006 0002 91ac")) == h("07 04 04 0000 0000 9d84")


def test_broadcast_write_executed_not_answered(slave, meter):
    assert slave.handle(h("00 06 0068 1f41 c1c7")) is None
    assert meter.core.read_holding(104) == 0x1F41
    assert slave.handle(h("00 10 0066 0002 04 0003 0004 8092")) is None
    assert [meter.core.read_holding(a) for a in (102, 103)] == [3, 4]


def test_broadcast_read_and_bad_broadcast_not_answered(slave, meter):
    assert slave.handle(h("00 04 0000 0001 301b")) is None
    assert slave.handle(h("00 06 0064 1234 c4b3")) is None      # refused, still silent
    assert slave.handle(h("00 01 0000 0001 fc1b")) is None


def test_other_unit_ignored(slave, meter):
    assert slave.handle(h("08 04 0000 0001 3153")) is None
    assert slave.handle(h("08 06 0068 1f40 014f")) is None
    assert meter.core.read_holding(104) == 6000


def test_bad_crc_not_answered_nor_executed(slave, meter):
    good = bytearray(h("07 06 0068 1f40 01b0"))
    for i in range(len(good)):
        for bit in (0x01, 0x80):
            bad = bytearray(good)
            bad[i] ^= bit
            assert slave.handle(bytes(bad)) is None
    assert meter.core.read_holding(104) == 6000
    assert slave.crc_errors == 2 * len(good)        # every single-bit error is caught by the CRC


def test_short_frames_ignored(slave):
    for frame in (b"", b"\x07", b"\x07\x04", h("07 84 c1")):
        assert slave.handle(frame) is None


def test_unit_range():
    m = SimMeter()
    with pytest.raises(ValueError):
        RtuSlave(0, m.core)
    with pytest.raises(ValueError):
        RtuSlave(248, m.core)


def test_t35():
    assert t35_us(9600) == 4011
    assert t35_us(19200) == 2006
    assert t35_us(38400) == 1750
    assert t35_us(115200) == 1750


# ---- RtuPort ---------------------------------------------------------------

class FakeUart:
    """Bytes arrive when the test says so; transmission takes `tx_polls` txdone() calls."""

    def __init__(self, events, echo=False, tx_polls=3):
        self.rx = bytearray()
        self.sent = []
        self.events = events
        self.echo = echo
        self.tx_polls = tx_polls
        self._busy = 0

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes):
        n = min(nbytes, len(self.rx), len(buf))
        buf[:n] = self.rx[:n]
        del self.rx[:n]
        return n

    def write(self, buf):
        data = bytes(buf)
        self.events.append(("write", data))
        self.sent.append(data)
        self._busy = self.tx_polls
        if self.echo:
            self.rx += data
        return len(data)

    def txdone(self):
        if self._busy:
            self._busy -= 1
            self.events.append(("busy",))
            return False
        self.events.append(("done",))
        return True


class FakePin:
    def __init__(self, events):
        self.events = events
        self.level = None

    def value(self, v):
        self.level = v
        self.events.append(("de", v))


def make_port(meter, echo=False, baud=9600):
    events = []
    uart = FakeUart(events, echo=echo)
    de = FakePin(events)
    hal = meter.hal
    port = RtuPort(uart, RtuSlave(7, meter.core), hal, de=de, baud=baud)
    return port, uart, de, events, hal


def settle(port, hal, ms):
    taken = False
    for _ in range(ms):
        hal.advance(1)
        taken |= port.poll()
    return taken


def test_port_answers_after_silence_and_drives_de(meter):
    port, uart, de, events, hal = make_port(meter)
    events.clear()
    uart.rx += h("07 04 0000 0010")
    port.poll()
    hal.advance(1)
    uart.rx += h("f1a0")                    # rest of the frame 1 ms later: same frame
    port.poll()
    hal.advance(3)
    assert not port.poll()                  # 3 ms < t3.5 at 9600 baud (4.011 ms)
    assert uart.sent == []
    assert settle(port, hal, 2)
    assert uart.sent == [h("07 04 20 0000 0064 0000 4dbc 0e10 0000 0000 0000 0000 0000 1770"
                           " 0000 0000 000a 03e9 0064 673b")]
    # DE up before the first byte, down only after the UART reported done.
    kinds = [e[0] for e in events]
    assert kinds == ["de", "write", "busy", "busy", "busy", "done", "de"]
    assert events[0] == ("de", 1) and events[-1] == ("de", 0)
    assert de.level == 0


def test_port_splits_frames_on_silence(meter):
    port, uart, de, events, hal = make_port(meter)
    uart.rx += h("07 03 0000 0002 c46d")
    settle(port, hal, 6)
    uart.rx += h("07 03 0065 0006 d5b1")
    settle(port, hal, 6)
    assert uart.sent == [h("07 03 04 0000 0064 9dd8"),
                         h("07 03 0c 03e8 001e 005a 1770 1388 0ce4 d479")]


def test_port_back_to_back_frames_without_gap_are_one_bad_frame(meter):
    port, uart, de, events, hal = make_port(meter)
    uart.rx += h("07 03 0000 0002 c46d") + h("07 03 0065 0006 d5b1")
    settle(port, hal, 6)
    assert uart.sent == []                  # the CRC over the joined bytes fails


def test_port_ignores_noise_and_recovers(meter):
    port, uart, de, events, hal = make_port(meter)
    uart.rx += b"\x00\xff\x13"
    settle(port, hal, 6)
    uart.rx += h("07 03 0000 0002 c46d")
    settle(port, hal, 6)
    assert uart.sent == [h("07 03 04 0000 0064 9dd8")]


def test_port_drops_overlong_stream(meter):
    port, uart, de, events, hal = make_port(meter)
    uart.rx += bytes(300) + h("07 03 0000 0002 c46d")
    settle(port, hal, 8)                    # two reads, then the silence
    assert uart.sent == [] and port.overflows == 1
    uart.rx += h("07 03 0000 0002 c46d")
    settle(port, hal, 6)
    assert uart.sent == [h("07 03 04 0000 0064 9dd8")]


def test_port_discards_own_echo(meter):
    port, uart, de, events, hal = make_port(meter, echo=True)
    uart.rx += h("07 03 0000 0002 c46d")
    settle(port, hal, 6)
    uart.rx += h("07 03 0000 0002 c46d")
    settle(port, hal, 6)
    assert uart.sent == [h("07 03 04 0000 0064 9dd8")] * 2


def test_port_silent_for_broadcast(meter):
    port, uart, de, events, hal = make_port(meter)
    events.clear()
    uart.rx += h("00 06 0068 1f41 c1c7")
    settle(port, hal, 6)
    assert uart.sent == [] and ("de", 1) not in events
    assert meter.core.read_holding(104) == 0x1F41


def test_port_fast_baud_uses_fixed_t35(meter):
    port, uart, de, events, hal = make_port(meter, baud=115200)
    assert port.t35_us == 1750
    uart.rx += h("07 03 0000 0002 c46d")
    port.poll()
    hal.advance(1)
    assert not port.poll()                 # 1 ms < 1.75 ms
    hal.advance(1)
    assert port.poll()
    assert uart.sent == [h("07 03 04 0000 0064 9dd8")]


def test_port_tx_wait_is_bounded(meter):
    port, uart, de, events, hal = make_port(meter)
    uart.tx_polls = 10 ** 9                # a UART that never reports done

    class Clock:
        t = 0

        def ticks_us(self):
            Clock.t += 500
            return Clock.t

        def ticks_diff(self, a, b):
            return a - b

    port._clock = Clock()
    uart.rx += h("07 03 0000 0002 c46d")
    for _ in range(20):
        port.poll()
    assert port.tx_timeouts == 1 and de.level == 0


def test_sim_hal_is_a_clock():
    hal = SimHal(start_ms=(1 << 30) - 1)
    a = hal.ticks_us()
    hal.advance(2)
    assert hal.ticks_diff(hal.ticks_us(), a) == 2000
