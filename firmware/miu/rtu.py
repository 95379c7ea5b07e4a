"""Modbus RTU slave: frame handling (pure) and the serial port driver.

RtuSlave.handle() maps one complete request frame to the exact response
bytes, or None when the request must not be answered (bad CRC, another unit,
a broadcast, a frame too short to be Modbus). RtuPort cuts frames out of a
UART byte stream by the t3.5 silence and drives the RS-485 DE pin around
each reply.

Supported: FC03, FC04, FC06, FC16 and FC43/MEI 14 (read device
identification, basic objects). Exceptions: 01 illegal function, 02 illegal
data address, 03 illegal data value, 04 device failure (a write that could
not be stored).
"""

from miu.compat import TYPE_CHECKING, const
from miu.crc import crc16

if TYPE_CHECKING:
    from miu.core import MeterCore
    from miu.hal import Clock, OutPin, Uart

_FC_READ_HOLDING = const(3)
_FC_READ_INPUT = const(4)
_FC_WRITE_SINGLE = const(6)
_FC_WRITE_MULTIPLE = const(16)
_FC_MEI = const(43)
_MEI_DEVICE_ID = const(14)
_MAX_READ = const(125)
_MAX_WRITE = const(123)
_CONFORMITY = const(0x81)   # basic identification, stream and individual access
_BUF = const(256)           # the largest RTU frame

DEFAULT_IDENTITY = ("edgegw", "MIU-1001", "1.00")


def t35_us(baud: int) -> int:
    """Inter-frame silence: 3.5 characters of 11 bits, fixed 1750 us above 19200 baud."""
    if baud > 19200:
        return 1750
    return (38_500_000 + baud - 1) // baud


class RtuSlave:
    """Answers Modbus RTU requests for one unit address from a MeterCore."""

    def __init__(self, unit: int, core: "MeterCore",
                 identity: "tuple[str, str, str]" = DEFAULT_IDENTITY) -> None:
        if not 1 <= unit <= 247:
            raise ValueError("unit address must be 1..247")
        self.unit = unit
        self._core = core
        self._ident = [identity[0].encode(), identity[1].encode(), identity[2].encode()]
        self.tx = bytearray(_BUF)
        self.frames = 0        # frames addressed to us (or broadcast) with a good CRC
        self.crc_errors = 0

    def handle(self, frame: "bytes | bytearray | memoryview") -> "bytes | None":
        """The response to one request frame, or None when there is none to send."""
        m = self.handle_into(frame, len(frame))
        return bytes(self.tx[:m]) if m else None

    def handle_into(self, frame: "bytes | bytearray | memoryview", n: int) -> int:
        """Like handle() on frame[:n], writing the response to self.tx; its length, 0 = none."""
        if n < 4 or n > _BUF:
            return 0
        if crc16(frame, n - 2) != frame[n - 2] | (frame[n - 1] << 8):
            self.crc_errors += 1
            return 0
        unit = frame[0]
        if unit != self.unit and unit != 0:
            return 0
        self.frames += 1
        fc = frame[1]
        if unit == 0:
            # Broadcast: writes are executed, nothing is ever answered.
            if fc == _FC_WRITE_SINGLE or fc == _FC_WRITE_MULTIPLE:
                self._dispatch(fc, frame, n)
            return 0
        return self._dispatch(fc, frame, n)

    def _dispatch(self, fc: int, frame: "bytes | bytearray | memoryview", n: int) -> int:
        if fc == _FC_READ_HOLDING or fc == _FC_READ_INPUT:
            return self._read(fc, frame, n)
        if fc == _FC_WRITE_SINGLE:
            return self._write_single(frame, n)
        if fc == _FC_WRITE_MULTIPLE:
            return self._write_multiple(frame, n)
        if fc == _FC_MEI:
            return self._device_id(frame, n)
        return self._exception(fc, 1)

    def _finish(self, m: int) -> int:
        c = crc16(self.tx, m)
        self.tx[m] = c & 0xFF
        self.tx[m + 1] = c >> 8
        return m + 2

    def _exception(self, fc: int, code: int) -> int:
        tx = self.tx
        tx[0] = self.unit
        tx[1] = (fc | 0x80) & 0xFF
        tx[2] = code
        return self._finish(3)

    def _read(self, fc: int, frame: "bytes | bytearray | memoryview", n: int) -> int:
        if n != 8:
            return self._exception(fc, 3)
        start = (frame[2] << 8) | frame[3]
        count = (frame[4] << 8) | frame[5]
        if count < 1 or count > _MAX_READ:
            return self._exception(fc, 3)
        tx = self.tx
        core = self._core
        j = 3
        for a in range(start, start + count):
            v = core.read_holding(a) if fc == _FC_READ_HOLDING else core.read_input(a)
            if v is None:
                return self._exception(fc, 2)
            tx[j] = v >> 8
            tx[j + 1] = v & 0xFF
            j += 2
        tx[0] = self.unit
        tx[1] = fc
        tx[2] = 2 * count
        return self._finish(j)

    def _write_single(self, frame: "bytes | bytearray | memoryview", n: int) -> int:
        if n != 8:
            return self._exception(_FC_WRITE_SINGLE, 3)
        addr = (frame[2] << 8) | frame[3]
        value = (frame[4] << 8) | frame[5]
        err = self._core.write_holding(addr, value)
        if err:
            return self._exception(_FC_WRITE_SINGLE, err)
        tx = self.tx
        for i in range(6):
            tx[i] = frame[i]
        tx[0] = self.unit
        return self._finish(6)

    def _write_multiple(self, frame: "bytes | bytearray | memoryview", n: int) -> int:
        if n < 9:
            return self._exception(_FC_WRITE_MULTIPLE, 3)
        addr = (frame[2] << 8) | frame[3]
        count = (frame[4] << 8) | frame[5]
        nbytes = frame[6]
        if count < 1 or count > _MAX_WRITE or nbytes != 2 * count or n != 9 + nbytes:
            return self._exception(_FC_WRITE_MULTIPLE, 3)
        values = []
        for i in range(count):
            values.append((frame[7 + 2 * i] << 8) | frame[8 + 2 * i])
        err = self._core.write_holdings(addr, values)
        if err:
            return self._exception(_FC_WRITE_MULTIPLE, err)
        tx = self.tx
        for i in range(6):
            tx[i] = frame[i]
        tx[0] = self.unit
        return self._finish(6)

    def _device_id(self, frame: "bytes | bytearray | memoryview", n: int) -> int:
        if n != 7:
            return self._exception(_FC_MEI, 3)
        if frame[2] != _MEI_DEVICE_ID:
            return self._exception(_FC_MEI, 1)
        code = frame[3]
        obj = frame[4]
        if code < 1 or code > 4:
            return self._exception(_FC_MEI, 3)
        if code == 4:
            if obj > 2:
                return self._exception(_FC_MEI, 2)
            first = obj
            last = obj
        else:
            # Regular and extended streams hold only the basic objects here;
            # an unknown start object restarts the stream at 0, as the
            # specification asks.
            first = obj if obj <= 2 else 0
            last = 2
        tx = self.tx
        tx[0] = self.unit
        tx[1] = _FC_MEI
        tx[2] = _MEI_DEVICE_ID
        tx[3] = code
        tx[4] = _CONFORMITY
        tx[5] = 0      # no more follows
        tx[6] = 0      # next object id
        tx[7] = last - first + 1
        j = 8
        for i in range(first, last + 1):
            s = self._ident[i]
            tx[j] = i
            tx[j + 1] = len(s)
            tx[j + 2:j + 2 + len(s)] = s
            j += 2 + len(s)
        return self._finish(j)


class RtuPort:
    """Frames a UART byte stream by t3.5 silence and answers through an RtuSlave.

    Call poll() from the main loop as often as possible; silence is measured
    from the poll that first saw the last byte, so it is never shorter than
    t3.5. The t1.5 inter-character limit is not enforced (a frame with a gap
    between 1.5 and 3.5 characters is taken whole; its CRC still guards it).
    """

    def __init__(self, uart: "Uart", slave: RtuSlave, clock: "Clock",
                 de: "OutPin | None" = None, baud: int = 9600) -> None:
        self._uart = uart
        self._slave = slave
        self._clock = clock
        self._de = de
        self.t35_us = t35_us(baud)
        self._char_us = (11_000_000 + baud - 1) // baud
        self._rx = bytearray(_BUF)
        self._mv = memoryview(self._rx)
        self._n = 0
        self._overflow = False
        self._last = clock.ticks_us()
        self.replies = 0
        self.overflows = 0
        self.tx_timeouts = 0
        if de is not None:
            de.value(0)

    def poll(self) -> bool:
        """Read what arrived; when a frame is complete, answer it. True when a frame was taken."""
        uart = self._uart
        k = uart.any()
        if k:
            room = _BUF - self._n
            if room <= 0:
                # More than 256 bytes without a pause is no frame: drop it all.
                self._overflow = True
                uart.readinto(self._mv, min(k, _BUF))
            else:
                got = uart.readinto(self._mv[self._n:], min(k, room))
                if got:
                    self._n += got
            self._last = self._clock.ticks_us()
            return False
        if self._n == 0 and not self._overflow:
            return False
        if self._clock.ticks_diff(self._clock.ticks_us(), self._last) < self.t35_us:
            return False
        n = self._n
        self._n = 0
        if self._overflow:
            self._overflow = False
            self.overflows += 1
            return True
        m = self._slave.handle_into(self._rx, n)
        if m:
            self._send(m)
        return True

    def _send(self, m: int) -> None:
        uart = self._uart
        clock = self._clock
        de = self._de
        if de is not None:
            de.value(1)
        uart.write(memoryview(self._slave.tx)[:m])
        # The driver must stay enabled until the last stop bit has left the
        # shift register, not just the FIFO; bounded by the frame's own time.
        limit = (m + 2) * self._char_us + 2000
        t0 = clock.ticks_us()
        while not uart.txdone():
            if clock.ticks_diff(clock.ticks_us(), t0) > limit:
                self.tx_timeouts += 1
                break
        if de is not None:
            de.value(0)
        self.replies += 1
        # A transceiver whose receiver stays enabled echoes our own reply.
        k = uart.any()
        while k:
            uart.readinto(self._mv, min(k, _BUF))
            k = uart.any()
