"""A simulated door controller: an event-log ring served through the
select-then-read window of the door-controller model (protocols/doorlog.py).

The ring wraps (the oldest records are overwritten once ``capacity`` is
reached), events arrive over time at ``rate_per_min`` and when a scenario
scripts them, and a scenario can clear the log, replace the controller (new
serial, numbering restarts) or put its clock off by some seconds.

Scenario keys (``[[device]]`` of family door_controller):

    params = { rate_per_min = 6, capacity = 1000, doors = 2, serial = "DC000001",
               cards = [3000000017, 3000000018], prefill = 50, clock_offset_s = 0 }

and per ``[[event]]`` a ``door`` table (see docs/doors.md, "Simulator"):

    door = { add = [{ event = "access_granted", door = 1, card = 3000000017 }], burst = 200,
             clear = true, replace = "DC000002", clock_offset_s = 900 }   (one line in TOML)
"""
from __future__ import annotations

import logging
import random
import time
from collections import deque
from dataclasses import dataclass

from protocols import doorlog
from protocols.models import Model

from .behaviours import Behaviour
from .device import ILLEGAL_ADDRESS, ILLEGAL_VALUE, SimulatedDevice

log = logging.getLogger(__name__)

# How often each kind occurs in generated traffic: mostly cards at the door.
_WEIGHTS = {
    "access_granted": 70, "refused_unknown_card": 5, "refused_expired_card": 4,
    "refused_outside_schedule": 3, "refused_anti_passback": 2, "exit_button": 10,
    "door_held_open": 2, "door_forced_open": 1, "tamper": 0.3, "mains_lost": 0.3,
    "battery_low": 0.2,
}


@dataclass
class LogRing:
    """The controller's log: numbered records in a ring of fixed capacity."""

    capacity: int = 1000
    serial: str = "DC000001"

    def __post_init__(self) -> None:
        self.records: deque[doorlog.Record] = deque(maxlen=self.capacity)
        self.next_index = 1

    @property
    def oldest(self) -> int:
        return self.records[0].index if self.records else 0

    @property
    def newest(self) -> int:
        return self.records[-1].index if self.records else 0

    def add(self, event: int, door: int, card: int, time_s: int) -> doorlog.Record:
        rec = doorlog.Record(index=self.next_index, time_s=int(time_s) & 0xFFFFFFFF,
                             card=int(card), door=int(door), event=int(event))
        self.next_index += 1
        self.records.append(rec)  # deque(maxlen) drops the oldest: the ring wraps
        return rec

    def get(self, index: int) -> doorlog.Record | None:
        if not self.records or not self.oldest <= index <= self.newest:
            return None
        return self.records[index - self.oldest]

    def clear(self, time_s: int) -> None:
        # As most controllers do: numbering restarts, and the clear itself is
        # the first record of the new log.
        self.records.clear()
        self.next_index = 1
        self.add(doorlog.EVENT_CODES["log_cleared"], 0, 0, time_s)


class DoorBehaviour(Behaviour):
    """Generates traffic at rate_per_min (Poisson arrivals)."""

    def tick(self, dev, dt: float) -> None:
        super().tick(dev, dt)
        rate = float(self.params.get("rate_per_min", 0.0))
        if rate <= 0:
            return
        expected = rate * dt / 60.0
        n = int(expected)
        if dev.rng.random() < expected - n:
            n += 1
        for _ in range(n):
            dev.random_event()


class DoorDevice(SimulatedDevice):
    """SimulatedDevice whose input registers beyond the status block are the
    log window, selected by the holding registers."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layout = doorlog.Layout.from_model(self.model)
        lay = self.layout
        self.ring = LogRing()
        self.firmware = "2.31"
        self.doors = 2
        self.clock_offset_s = 0.0
        self.cards: list[int] = []
        self.clock = time.time
        self.select = (1, 1)
        self.selects = 0
        # The served window spans every slot a master may select.
        end = lay.slot_address + lay.slot_registers * lay.slots_per_read
        lo, _hi = self.spans.get(lay.slot_function, (0, end))
        self.spans[lay.slot_function] = (min(lo, lay.status_address), end)

    # -- the controller's side

    def now_s(self) -> int:
        return int(self.clock() + self.clock_offset_s)

    def add(self, event: int | str, door: int = 1, card: int = 0, time_s: int | None = None) -> doorlog.Record:
        code = doorlog.EVENT_CODES[event] if isinstance(event, str) else int(event)
        return self.ring.add(code, door, card, self.now_s() if time_s is None else time_s)

    def random_event(self, time_s: int | None = None) -> doorlog.Record:
        kinds = list(_WEIGHTS)
        kind = self.rng.choices(kinds, weights=[_WEIGHTS[k] for k in kinds])[0]
        t = doorlog.EVENT_CODES[kind]
        card = 0
        if doorlog.EVENT_TYPES[t].card:
            card = self.rng.choice(self.cards) if self.cards else self.rng.randrange(10_000_000, 4_000_000_000)
        door = self.rng.randint(1, max(1, self.doors)) if kind not in ("mains_lost", "battery_low", "tamper") else 0
        return self.add(t, door, card, time_s)

    def clear_log(self) -> None:
        self.ring.clear(self.now_s())

    def replace_controller(self, serial: str, capacity: int | None = None) -> None:
        self.ring = LogRing(capacity=capacity or self.ring.capacity, serial=serial)

    def door_action(self, action: dict) -> None:
        """One scenario ``door = {...}`` table; keys applied in a fixed order."""
        if "replace" in action:
            self.replace_controller(str(action["replace"]), action.get("capacity"))
        if action.get("clear"):
            self.clear_log()
        if "clock_offset_s" in action:
            self.clock_offset_s = float(action["clock_offset_s"])
        for spec in action.get("add", []):
            self.add(spec.get("event", "access_granted"), int(spec.get("door", 1)),
                     int(spec.get("card", 0)), spec.get("time_s"))
        for _ in range(int(action.get("burst", 0))):
            self.random_event()

    def status(self) -> doorlog.Status:
        r = self.ring
        return doorlog.Status(serial=r.serial, firmware=self.firmware, model_code=doorlog.MODEL_CODE,
                              doors=self.doors, capacity=r.capacity, oldest=r.oldest,
                              newest=r.newest, clock_s=self.now_s() & 0xFFFFFFFF)

    # -- Modbus

    def read(self, function: str, address: int, count: int) -> list[int] | int:
        self.requests += 1
        if self.line.exception:
            return self.line.exception
        lay = self.layout
        image: dict[int, int] = {}
        if function == lay.status_function:
            for i, r in enumerate(lay.encode_status(self.status())):
                image[lay.status_address + i] = r
        if function == lay.slot_function:
            first, n = self.select
            for k in range(lay.slots_per_read):
                rec = self.ring.get(first + k) if k < n else None
                base = lay.slot_address + k * lay.slot_registers
                for i, r in enumerate(doorlog.encode_slot(lay, rec)):
                    image[base + i] = r
        if function == "holding":
            for i, r in enumerate(lay.select(*self.select)):
                image[lay.select_address + i] = r
        if not image or any(a not in image for a in range(address, address + count)):
            return ILLEGAL_ADDRESS
        return [image[a] for a in range(address, address + count)]

    def write(self, address: int, regs: list[int]) -> int | None:
        lay = self.layout
        if address != lay.select_address or len(regs) != 3:
            return ILLEGAL_ADDRESS
        first, n = lay.parse_select(regs)
        if not 1 <= n <= lay.slots_per_read:
            return ILLEGAL_VALUE
        self.select = (first, n)
        self.selects += 1
        return None


def make_door_device(model: Model, spec: dict, rng: random.Random) -> DoorDevice:
    unit = int(spec["unit"])
    p = dict(spec.get("params", {}))
    dev = DoorDevice(model=model, unit=unit, name=spec.get("name", f"{model.id}-{unit}"), rng=rng)
    dev.ring = LogRing(capacity=int(p.get("capacity", 1000)), serial=str(p.get("serial", f"DC{unit:06d}")))
    dev.doors = int(p.get("doors", 2))
    dev.firmware = str(p.get("firmware", "2.31"))
    dev.clock_offset_s = float(p.get("clock_offset_s", 0.0))
    dev.cards = [int(c) for c in p.get("cards", [])]
    dev.behaviour = DoorBehaviour(p)
    n = int(p.get("prefill", 0))
    for i in range(n):
        # history spread over the past, a minute apart
        dev.random_event(dev.now_s() - 60 * (n - i))
    return dev
