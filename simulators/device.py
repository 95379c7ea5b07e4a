"""A simulated Modbus device built from a model file.

The device keeps engineering values by field name (what a meter "knows") and
encodes them into registers with the same types module the gateway decodes
with, so a register map exists once: in the model file. A behaviour (see
behaviours.py) moves the values over time; a scenario (scenario.py) overrides
them, raises faults by setting status bits, or makes the device go silent.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from protocols.modbus import types
from protocols.models import Model

log = logging.getLogger(__name__)

FUNCTION_CODES = {3: "holding", 4: "input", 6: "holding", 16: "holding"}

# Exception codes a simulated device answers with.
ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3


@dataclass
class LineFaults:
    """Line trouble injected between this device and the master."""

    silent: bool = False          # no answer at all (unit dead, wiring cut)
    garble_rate: float = 0.0      # share of answers with a corrupted CRC
    strict_holes: bool = False    # answer exception 02 for unmapped registers
    exception: int | None = None  # answer every read with this exception code
    noise: object | None = None   # a noise.Noise: what the line does to answers (relay.py)


@dataclass
class SimulatedDevice:
    model: Model
    unit: int
    name: str = ""
    values: dict[str, object] = field(default_factory=dict)
    line: LineFaults = field(default_factory=LineFaults)
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    behaviour: object | None = None
    requests: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.model.id}-{self.unit}"
        for f in self.model.fields:
            self.values.setdefault(f.name, _zero(f))
        # Register spans per function: holes inside a span read as 0, as most
        # meters answer them, unless strict_holes says otherwise.
        self.spans: dict[str, tuple[int, int]] = {}
        for f in self.model.fields:
            lo, hi = f.address, f.address + types.register_count(f)
            cur = self.spans.get(f.function)
            self.spans[f.function] = (min(lo, cur[0]), max(hi, cur[1])) if cur else (lo, hi)
        self.mapped: dict[str, set[int]] = {fn: set() for fn in self.spans}
        for f in self.model.fields:
            self.mapped[f.function].update(range(f.address, f.address + types.register_count(f)))

    # -- registers ---------------------------------------------------------

    def registers(self, function: str) -> dict[int, int]:
        """Current register image of one function, encoded from the values."""
        image: dict[int, int] = {}
        by_addr: dict[int, list] = {}
        for f in self.model.fields:
            if f.function != function:
                continue
            if f.type == "bit":
                by_addr.setdefault(f.address, []).append(f)
                continue
            try:
                regs = types.encode(f, self.values[f.name])
            except (ValueError, TypeError, OverflowError):
                # A scenario may set a value the type cannot hold: send what a
                # broken sensor would, all ones.
                regs = [0xFFFF] * types.register_count(f)
            for i, r in enumerate(regs):
                image[f.address + i] = r
        for addr, bits in by_addr.items():
            word = image.get(addr, 0)
            for f in bits:
                if self.values.get(f.name):
                    word |= 1 << (f.bit or 0)
                else:
                    word &= ~(1 << (f.bit or 0))
            image[addr] = word
        return image

    def read(self, function: str, address: int, count: int) -> list[int] | int:
        """Registers for a request, or an exception code."""
        self.requests += 1
        if self.line.exception:
            return self.line.exception
        own = getattr(self.behaviour, "read_registers", None)
        if own is not None:
            return own(function, address, count)
        span = self.spans.get(function)
        if span is None or address < span[0] or address + count > span[1]:
            return ILLEGAL_ADDRESS
        if self.line.strict_holes and any(
            a not in self.mapped[function] for a in range(address, address + count)
        ):
            return ILLEGAL_ADDRESS
        image = self.registers(function)
        return [image.get(a, 0) for a in range(address, address + count)]

    def write(self, address: int, regs: list[int]) -> int | None:
        """Write holding registers; returns an exception code or None."""
        own = getattr(self.behaviour, "write_registers", None)
        if own is not None:
            return own(address, regs)
        fields = [f for f in self.model.fields if f.function == "holding"]
        touched = [f for f in fields if f.address <= address < f.address + types.register_count(f)
                   or address <= f.address < address + len(regs)]
        if not touched:
            return ILLEGAL_ADDRESS
        image = self.registers("holding")
        for i, r in enumerate(regs):
            image[address + i] = r
        for f in touched:
            n = types.register_count(f)
            try:
                self.values[f.name] = types.decode(f, [image.get(f.address + i, 0) for i in range(n)])
            except types.DecodeError:
                return ILLEGAL_VALUE
        return None

    def set_bit(self, field_name: str, bit: int, on: bool) -> None:
        word = int(self.values.get(field_name, 0))
        self.values[field_name] = (word | (1 << bit)) if on else (word & ~(1 << bit))

    def tick(self, dt: float) -> None:
        if self.behaviour is not None:
            self.behaviour.tick(self, dt)


def _zero(f: types.Field) -> object:
    if f.type == "string":
        return ""
    if f.type == "bit":
        return False
    if f.min is not None and f.min > 0:
        return f.min
    return 0
