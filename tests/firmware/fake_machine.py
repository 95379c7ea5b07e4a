# A stand-in for MicroPython's `machine` module, for running firmware/main.py
# under the WebAssembly port (which has no machine module). MicroPython syntax
# only. Installed as /lib/machine.py by test_wasm.py.
#
# WDT.feed() is called once per main-loop pass; it calls `on_pass(n)` so the
# test script can act between passes (fire reed interrupts, feed the UART).

pins = {}
uarts = []
wdts = []
on_pass = None


class Pin:
    IN = 0
    OUT = 1
    PULL_UP = 1
    IRQ_FALLING = 4

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self.level = 1 if pull == Pin.PULL_UP else 0
        self.history = []
        self.handler = None
        self.hard = None
        if value is not None:
            self.value(value)
        pins[id] = self

    def value(self, v=None):
        if v is None:
            return self.level
        self.level = v
        self.history.append(v)
        return None

    def irq(self, handler=None, trigger=0, hard=False):
        self.handler = handler
        self.hard = hard


class ADC:
    def __init__(self, id):
        self.id = id
        self.raw = 36000          # 3.6 V battery behind the 1:2 divider: 1.8 V at the pin

    def read_u16(self):
        return self.raw


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None,
                 rxbuf=256, txbuf=256, timeout=0):
        self.id = id
        self.baudrate = baudrate
        self.rx = bytearray()
        self.sent = []
        self.de_when_sent = []
        uarts.append(self)

    def any(self):
        return len(self.rx)

    def readinto(self, buf, nbytes):
        n = min(nbytes, len(self.rx))
        for i in range(n):
            buf[i] = self.rx[i]
        self.rx = self.rx[n:]
        return n

    def write(self, buf):
        self.sent.append(bytes(buf))
        self.de_when_sent.append(pins[2].level if 2 in pins else -1)
        return len(buf)

    def txdone(self):
        return True


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feeds = 0
        wdts.append(self)

    def feed(self):
        self.feeds += 1
        if on_pass is not None:
            on_pass(self.feeds)
