"""The hardware abstraction the core is written against (types only).

Nothing here runs: the board's implementation is `MachineHal` in main.py,
the CPython/MicroPython fake is `miu.sim.SimHal`. The protocols exist so mypy
checks both against what the core calls.

Tick values follow MicroPython's `time.ticks_ms()` rules: they wrap, and are
only compared through `ticks_diff` / moved through `ticks_add`.
"""

from miu.compat import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Protocol

    class Hal(Protocol):
        def ticks_ms(self) -> int:
            """Millisecond ticks; must not allocate (called in the pulse interrupt)."""
            ...

        def ticks_diff(self, a: int, b: int) -> int:
            """a - b on the tick circle, as time.ticks_diff."""
            ...

        def ticks_add(self, a: int, delta: int) -> int:
            ...

        def battery_mv(self) -> int:
            """Battery voltage in mV, from the ADC divider."""
            ...

        def valve_motor(self, direction: int) -> None:
            """Drive the valve motor's H-bridge: 1 open, -1 close, 0 off."""
            ...

    class Clock(Protocol):
        def ticks_us(self) -> int:
            ...

        def ticks_diff(self, a: int, b: int) -> int:
            ...

    class Medium(Protocol):
        def read(self, offset: int, n: int) -> bytes:
            ...

        def write(self, offset: int, data: bytes | bytearray) -> None:
            ...

    # Double-underscore parameters are positional-only to mypy (machine.UART
    # declares them so); the `/` syntax would not parse on MicroPython.
    class Uart(Protocol):
        def any(self) -> int:
            ...

        def readinto(self, __buf: bytearray | memoryview, __nbytes: int) -> int | None:
            ...

        def write(self, __buf: bytes | bytearray | memoryview) -> int | None:
            ...

        def txdone(self) -> bool:
            ...

    class OutPin(Protocol):
        def value(self, __v: int) -> None:
            ...
