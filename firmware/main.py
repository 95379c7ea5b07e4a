"""Meter interface unit: board entry point (MicroPython, RP2040 / Raspberry Pi Pico).

Wires the real hardware to the pure core in /lib/miu and runs the main loop.
Pin assignments and wiring: firmware/README.md.
"""

import machine
import micropython
import time

from miu.compat import TYPE_CHECKING, const
from miu.core import MeterCore
from miu.flash import FileMedium, FlashStore
from miu.rtu import RtuPort, RtuSlave

if TYPE_CHECKING:
    # The stubs give ticks an opaque type; on the board they are small ints,
    # which is what the core's HAL protocol says.
    def _ticks_ms() -> int: ...
    def _ticks_us() -> int: ...
    def _ticks_diff(a: int, b: int) -> int: ...
    def _ticks_add(a: int, delta: int) -> int: ...
else:
    from time import ticks_add as _ticks_add
    from time import ticks_diff as _ticks_diff
    from time import ticks_ms as _ticks_ms
    from time import ticks_us as _ticks_us

# Site settings.
UNIT = const(1)              # Modbus unit address
BAUD = const(9600)           # 8N1
STATE_FILE = "/miu.dat"

# Pins (GPIO numbers).
_PIN_TX = const(0)           # UART0 TX -> transceiver DI
_PIN_RX = const(1)           # UART0 RX <- transceiver RO
_PIN_DE = const(2)           # transceiver DE and /RE, tied
_PIN_REED1 = const(6)        # reed switch 1 to GND
_PIN_REED2 = const(7)        # reed switch 2 to GND
_PIN_MAGNET = const(8)       # anti-magnetic reed switch to GND (closed = magnet)
_PIN_VALVE_A = const(10)     # H-bridge IN1: high = drive open
_PIN_VALVE_B = const(11)     # H-bridge IN2: high = drive closed
_PIN_BRIDGE_EN = const(12)   # H-bridge nSLEEP: low between moves to save the battery
_ADC_BATTERY = const(26)     # ADC0, battery through a 1:2 divider

_DIVIDER_NUM = const(2)      # battery mV = adc mV * 2
_ADC_REF_MV = const(3300)
_ADC_SAMPLES = const(8)

_WDT_MS = const(5000)        # the loop passes in a few ms; a flash write takes tens
_MAX_LOOP_ERRORS = const(3)  # consecutive failed passes before the watchdog may bite
_LOOP_SLEEP_MS = const(1)


class MachineHal:
    """The core's HAL on the rp2 port."""

    def __init__(self) -> None:
        self._adc = machine.ADC(_ADC_BATTERY)
        self._a = machine.Pin(_PIN_VALVE_A, machine.Pin.OUT, value=0)
        self._b = machine.Pin(_PIN_VALVE_B, machine.Pin.OUT, value=0)
        self._en = machine.Pin(_PIN_BRIDGE_EN, machine.Pin.OUT, value=0)

    def ticks_ms(self) -> int:
        return _ticks_ms()

    def ticks_us(self) -> int:
        return _ticks_us()

    def ticks_diff(self, a: int, b: int) -> int:
        return _ticks_diff(a, b)

    def ticks_add(self, a: int, delta: int) -> int:
        return _ticks_add(a, delta)

    def battery_mv(self) -> int:
        total = 0
        for _ in range(_ADC_SAMPLES):
            total += self._adc.read_u16()
        return total * _ADC_REF_MV * _DIVIDER_NUM // (_ADC_SAMPLES * 65535)

    def valve_motor(self, direction: int) -> None:
        # Both legs low first: never short the bridge while reversing.
        self._a.value(0)
        self._b.value(0)
        if direction > 0:
            self._en.value(1)
            self._a.value(1)
        elif direction < 0:
            self._en.value(1)
            self._b.value(1)
        else:
            self._en.value(0)


class _Reeds:
    """Hard-IRQ handlers: one call into the core, which does not allocate."""

    def __init__(self, core: MeterCore) -> None:
        self._core = core

    def reed1(self, pin: machine.Pin) -> None:
        self._core.on_pulse(0)

    def reed2(self, pin: machine.Pin) -> None:
        self._core.on_pulse(1)


def main(passes: int = -1) -> None:
    """Run the unit; forever, or for `passes` loop passes (the interpreter test)."""
    if hasattr(micropython, "alloc_emergency_exception_buf"):
        # A traceback from a hard IRQ needs memory set aside before it happens.
        # (Ports without hard IRQs, like the WebAssembly test build, lack it.)
        micropython.alloc_emergency_exception_buf(100)
    hal = MachineHal()
    store = FlashStore(FileMedium(STATE_FILE, 8 * 64), slots=8, slot_size=64)
    core = MeterCore(hal, store)

    reeds = _Reeds(core)
    # External 100 k pull-ups and 100 nF to GND on the reed inputs take most
    # of the bounce; the internal pull-ups stay on as a fallback.
    reed1 = machine.Pin(_PIN_REED1, machine.Pin.IN, machine.Pin.PULL_UP)
    reed2 = machine.Pin(_PIN_REED2, machine.Pin.IN, machine.Pin.PULL_UP)
    reed1.irq(handler=reeds.reed1, trigger=machine.Pin.IRQ_FALLING, hard=True)
    reed2.irq(handler=reeds.reed2, trigger=machine.Pin.IRQ_FALLING, hard=True)
    magnet = machine.Pin(_PIN_MAGNET, machine.Pin.IN, machine.Pin.PULL_UP)

    uart = machine.UART(0, baudrate=BAUD, bits=8, parity=None, stop=1,
                        tx=machine.Pin(_PIN_TX), rx=machine.Pin(_PIN_RX),
                        rxbuf=512, txbuf=512, timeout=0)
    de = machine.Pin(_PIN_DE, machine.Pin.OUT, value=0)
    port = RtuPort(uart, RtuSlave(UNIT, core), hal, de=de, baud=BAUD)

    wdt = machine.WDT(timeout=_WDT_MS)
    errors = 0
    while passes != 0:
        if passes > 0:
            passes -= 1
        try:
            core.on_magnet(magnet.value() == 0)
            core.tick(hal.ticks_ms())
            port.poll()
            errors = 0
        except Exception as e:  # noqa: BLE001 - the loop must survive one bad pass
            errors += 1
            print("miu: loop error", errors, repr(e))
        # Fed only while passes complete: a wedged or repeatedly failing loop
        # resets the board. Counted pulses survive in flash (bounded loss).
        if errors < _MAX_LOOP_ERRORS:
            wdt.feed()
        time.sleep_ms(_LOOP_SLEEP_MS)


if __name__ == "__main__":
    main()
