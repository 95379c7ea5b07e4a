"""A fake HAL and flash for tests and the gateway's meter simulator.

Runs unchanged on CPython and on MicroPython (the WebAssembly test loads it
too). The clock is set by the caller and follows MicroPython's tick rules
(wraps at 2**30), so the core's wrap handling is exercised off the board.
"""

from miu.compat import TYPE_CHECKING, const
from miu.core import DEBOUNCE_MS, PERSIST_MS, PERSIST_PULSES, REED_WINDOW, VALVE_PULSE_MS, MeterCore
from miu.flash import FlashStore

if TYPE_CHECKING:
    from miu.hal import Medium
    from miu.rtu import RtuSlave

TICKS_PERIOD = const(0x40000000)
_MASK = const(0x3FFFFFFF)
_HALF = const(0x20000000)


class PowerCut(Exception):
    """Raised by SimFlash in the middle of a write it was told to tear."""


class SimHal:
    """Settable clock, battery voltage, magnet input; records the valve motor drive."""

    def __init__(self, start_ms: int = 0, battery_mv: int = 3600) -> None:
        self._ticks = start_ms & _MASK
        self.elapsed_ms = 0           # never wraps: total time advanced
        self.battery = battery_mv     # what battery_mv() reports
        self.magnet = False           # for callers that pass it on with core.on_magnet()
        self.motor = 0                # last valve_motor() direction
        self.motor_log: list[int] = []

    # Clock -------------------------------------------------------------
    def ticks_ms(self) -> int:
        return self._ticks

    def ticks_us(self) -> int:
        return (self._ticks * 1000) & _MASK

    def ticks_diff(self, a: int, b: int) -> int:
        return ((a - b + _HALF) & _MASK) - _HALF

    def ticks_add(self, a: int, delta: int) -> int:
        return (a + delta) & _MASK

    def advance(self, ms: int) -> int:
        """Move the clock forward; returns the new tick value."""
        self._ticks = (self._ticks + ms) & _MASK
        self.elapsed_ms += ms
        return self._ticks

    # Inputs and outputs -------------------------------------------------
    def battery_mv(self) -> int:
        return self.battery

    def valve_motor(self, direction: int) -> None:
        self.motor = direction
        self.motor_log.append(direction)


class SimFlash:
    """In-memory medium (erased = 0xFF) that can tear a write or fail it."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.data = bytearray(b"\xff" * size)
        self.writes = 0
        self.slot_writes: dict[int, int] = {}
        self._tear_after = -1
        self._fail = 0

    def tear_next_write(self, keep: int) -> None:
        """The next write stores only its first `keep` bytes, then raises PowerCut."""
        self._tear_after = keep

    def fail_next_writes(self, n: int) -> None:
        """The next n writes raise OSError without touching the medium."""
        self._fail = n

    def read(self, offset: int, n: int) -> bytes:
        return bytes(self.data[offset:offset + n])

    def write(self, offset: int, data: "bytes | bytearray") -> None:
        if self._fail > 0:
            self._fail -= 1
            raise OSError(5)
        self.writes += 1
        self.slot_writes[offset] = self.slot_writes.get(offset, 0) + 1
        if self._tear_after >= 0:
            keep = self._tear_after
            self._tear_after = -1
            self.data[offset:offset + keep] = data[:keep]
            raise PowerCut()
        self.data[offset:offset + len(data)] = data


class SimMeter:
    """A MeterCore on a SimHal with helpers to run gas through it.

    Everything goes through the core's public API (on_pulse, on_magnet, tick,
    read_input/read_holding, write_holding(s)), so what works here works the
    same for any other caller.
    """

    def __init__(self, hal: "SimHal | None" = None, flash: "Medium | None" = None,
                 debounce_ms: int = DEBOUNCE_MS, persist_pulses: int = PERSIST_PULSES,
                 persist_ms: int = PERSIST_MS, reed_window: int = REED_WINDOW,
                 valve_pulse_ms: int = VALVE_PULSE_MS, two_reeds: bool = True) -> None:
        self.hal = hal if hal is not None else SimHal()
        self.flash: "Medium" = flash if flash is not None else SimFlash()
        self._options = (debounce_ms, persist_pulses, persist_ms, reed_window, valve_pulse_ms)
        self._two_reeds = two_reeds
        self._acc = 0
        self._half = False
        self.core = self._new_core()

    def _new_core(self) -> MeterCore:
        o = self._options
        return MeterCore(self.hal, FlashStore(self.flash), o[0], o[1], o[2], o[3], o[4],
                         self._two_reeds)

    def reboot(self) -> MeterCore:
        """Power cycle: a new core restored from the same flash (RAM state is lost)."""
        self.core = self._new_core()
        self._acc = 0
        self._half = False
        return self.core

    def tick(self) -> None:
        self.core.on_magnet(self.hal.magnet)
        self.core.tick(self.hal.ticks_ms())

    def advance(self, ms: int, step_ms: int = 1000) -> None:
        """Let time pass, ticking the core every step_ms."""
        while ms > 0:
            s = step_ms if ms > step_ms else ms
            self.hal.advance(s)
            ms -= s
            self.tick()

    def credit(self, litres: int) -> int:
        """A purchase: FC16 of the credit register. Returns the exception code, 0 = ok."""
        return self.core.write_holdings(107, [(litres >> 16) & 0xFFFF, litres & 0xFFFF])

    def command(self, value: int) -> int:
        return self.core.write_holding(100, value)

    def run_flow(self, m3h: float, ms: int, reeds: "tuple[bool, bool]" = (True, True),
                 step_ms: int = 100, through_closed_valve: bool = False) -> None:
        """Demand gas at m3h for ms milliseconds.

        Gas flows only while the core says the valve is open, unless
        through_closed_valve (a leaking valve or a bypass). Each revolution
        closes reed 1 and, half a revolution later, reed 2 (either can be
        marked broken in `reeds`); the core is ticked every step_ms.
        Fractions of a pulse carry over between calls.
        """
        pl = self.core.read_holding(101) or 1
        # Integer arithmetic (ml/h times ms) so closures land on the same
        # millisecond on every interpreter and never drift.
        half = pl * 5 * 3_600_000                 # half a pulse: pl cL * 10 ml / 2, in ml*ms/h
        rate = int(m3h * 1_000_000 + 0.5)         # ml/h
        while ms > 0:
            s = step_ms if ms > step_ms else ms
            ms -= s
            at = 0        # ms of this step already passed
            flowing = rate > 0 and (through_closed_valve or self.core.valve_open)
            while flowing:
                need = max((half - self._acc + rate - 1) // rate, 0)
                if at + need > s:
                    break
                # Each closure at its own time, so debouncing sees real spacing.
                self.hal.advance(need)
                at += need
                self._acc += rate * need - half
                reed = 1 if self._half else 0
                self._half = not self._half
                if reeds[reed]:
                    self.core.on_pulse(reed)
            if flowing:
                self._acc += rate * (s - at)
            self.hal.advance(s - at)
            self.tick()

    def read_inputs(self, start: int = 0, count: int = 16) -> list[int]:
        out = []
        for a in range(start, start + count):
            v = self.core.read_input(a)
            out.append(-1 if v is None else v)
        return out

    def slave(self, unit: int) -> "RtuSlave":
        from miu.rtu import RtuSlave
        return RtuSlave(unit, self.core)
