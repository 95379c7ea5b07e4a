"""The residential meter simulator runs the meter interface unit's own
firmware core (firmware/miu), so the meter's behaviour exists once.

Scenario `params` drive what the meter sees: gas demand (`flow_m3h`), a
magnet at the meter (`magnet`), the battery (`battery_V`), broken reed
switches (`reed1_ok`, `reed2_ok`), gas through a shut valve (`leak`), a
clock speed-up (`time_scale`) so days without a pulse pass in seconds, and
`command` ("close", "open", "fault_card"): one write to the command register,
as the office or a service card would make, done once at the next tick.
"""
from __future__ import annotations

from miu.sim import SimMeter

from .behaviours import Behaviour
from .device import ILLEGAL_ADDRESS

FC_INPUT, FC_HOLDING = "input", "holding"
COMMANDS = {"fault_card": 0xA5C1, "open": 0xA5C2, "close": 0xA5C3}


class MiuBehaviour(Behaviour):
    # Wider than the model's fields: the command register (100), the credit
    # register (107-108) and the FC03 mirror of the inputs (0-19) exist too;
    # the core answers exception 02 for anything it does not map.
    spans = {"holding": (0, 120), "input": (0, 20)}
    def __init__(self, dev, params: dict | None = None) -> None:
        super().__init__(params)
        self.meter = SimMeter()
        p = self.params
        balance_l = int(float(p.get("balance_m3", 50.0)) * 1000)
        if balance_l > 0:
            self.meter.credit(balance_l)
            self.meter.command(0xA5C2)  # open: a commissioned meter with gas bought
        self.meter.advance(5000)
        self._carry_ms = 0.0

    def tick(self, dev, dt: float) -> None:
        super().tick(dev, dt)
        p = self.params
        command = p.pop("command", None)
        if command is not None:
            if command not in COMMANDS:
                raise ValueError(f"miu param command = {command!r}: one of {', '.join(COMMANDS)}")
            self.meter.command(COMMANDS[command])
        hal = self.meter.hal
        hal.battery = int(float(p.get("battery_V", 3.6)) * 1000)
        hal.magnet = bool(p.get("magnet", False))
        self._carry_ms += dt * 1000.0 * float(p.get("time_scale", 1.0))
        ms = int(self._carry_ms)
        self._carry_ms -= ms
        if ms <= 0:
            return
        self.meter.run_flow(float(p.get("flow_m3h", 0.3)), ms,
                            reeds=(bool(p.get("reed1_ok", True)), bool(p.get("reed2_ok", True))),
                            step_ms=max(100, ms // 50),
                            through_closed_valve=bool(p.get("leak", False)))

    # The device's registers are the core's registers.
    def read_registers(self, function: str, address: int, count: int) -> list[int] | int:
        get = self.meter.core.read_input if function == FC_INPUT else self.meter.core.read_holding
        out = []
        for a in range(address, address + count):
            v = get(a)
            if v is None:
                return ILLEGAL_ADDRESS
            out.append(v)
        return out

    def write_registers(self, address: int, values: list[int]) -> int | None:
        err = self.meter.core.write_holdings(address, values)
        return err or None
