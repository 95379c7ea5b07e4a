"""How simulated devices evolve over time, one behaviour per model family.

Behaviours are the only code per family; registers and faults stay in the
model files. A scenario can pin any value (see scenario.py); a pinned value is
left alone by the behaviour.
"""
from __future__ import annotations

import math


class Behaviour:
    """Default: values stay as set; totals follow a flow field if present."""

    def __init__(self, params: dict | None = None) -> None:
        self.params = dict(params or {})
        self.pinned: set[str] = set()
        self.t = 0.0

    def tick(self, dev, dt: float) -> None:
        self.t += dt


class Flowmeter(Behaviour):
    """Turbine/roots meter with a volume corrector.

    Flow wanders around `mean_flow_m3h`; totals only increase; below the
    starting flow the meter shows SLEEP (status bit 0), as reference D1 says.
    """

    SLEEP_BIT = 0

    def tick(self, dev, dt: float) -> None:
        super().tick(dev, dt)
        p = self.params
        v = dev.values
        if "flow_m3h" not in self.pinned:
            mean = float(p.get("mean_flow_m3h", 40.0))
            swing = float(p.get("swing", 0.2))
            wobble = math.sin(self.t / 30.0) * swing * mean + dev.rng.gauss(0, 0.02 * mean)
            v["flow_m3h"] = max(0.0, mean + wobble)
        flow = float(v.get("flow_m3h", 0.0))
        starting = float(p.get("starting_flow_m3h", 0.5))
        sleeping = flow < starting
        if "status_word" not in self.pinned:
            dev.set_bit("status_word", self.SLEEP_BIT, sleeping)
        counted = 0.0 if sleeping else flow
        temp = float(v.get("temperature_C", 15.0))
        press = float(v.get("pressure_kPa", 101.325))
        if "temperature_C" not in self.pinned:
            v["temperature_C"] = 15.0 + 5.0 * math.sin(self.t / 600.0)
        if "pressure_kPa" not in self.pinned:
            v["pressure_kPa"] = 300.0 + dev.rng.gauss(0, 0.5)
        # Standard conditions 101.325 kPa, 20 C (as Chinese gas billing uses).
        factor = (press / 101.325) * (293.15 / (273.15 + temp)) if temp > -273 else 1.0
        if "flow_std_m3h" not in self.pinned:
            v["flow_std_m3h"] = counted * factor
        # Totals are kept unrounded: the register's 0.001 m3 is applied when
        # they are encoded for the wire. Rounding at every tick swallowed
        # part of each increment (40.5 m3/h counted 0.020 m3 per 2 s, not
        # 0.0225) and all of a slow flow's (8 m3/h stood still).
        if "volume_work_m3" not in self.pinned:
            v["volume_work_m3"] = float(v.get("volume_work_m3", 0.0)) + counted * dt / 3600.0
        if "volume_std_m3" not in self.pinned:
            v["volume_std_m3"] = float(v.get("volume_std_m3", 0.0)) + counted * factor * dt / 3600.0
        if "battery_V" not in self.pinned and not v.get("battery_V"):
            v["battery_V"] = 3.6


class Counter(Behaviour):
    """Any device with a flow and one or more totals: totals integrate flow."""

    def tick(self, dev, dt: float) -> None:
        super().tick(dev, dt)
        flow = float(dev.values.get("flow_m3h", 0.0) or 0.0)
        for name in self.params.get("totals", ()):
            if name not in self.pinned:
                # unrounded, as in Flowmeter: the wire quantises
                dev.values[name] = float(dev.values.get(name, 0.0)) + flow * dt / 3600.0


class FlowController(Behaviour):
    """Prepaid controller (MHCG) on a flowmeter, counting the flowmeter's pulses.

    Gas demand `flow_m3h` moves the flowmeter's own total while the valve is
    open; the controller's billing total and the balance follow the pulses
    that reach it: `pulse_share` 1.0 is a sound signal path, below 1 a lossy
    line, above 1 interference or a pulses-per-unit mismatch (reference B6).
    A drift stays when the cause is fixed, as on the real controller; an
    event with `params = { resync = true }` is the operator bringing the two
    counts together again, once.
    """

    def tick(self, dev, dt: float) -> None:
        super().tick(dev, dt)
        p = self.params
        v = dev.values
        resync = bool(p.pop("resync", False))
        closed = int(v.get("valve_state", 0) or 0) == 1
        gas = 0.0 if closed else float(p.get("flow_m3h", 0.0)) * dt / 3600.0
        # Kept unrounded: a 0.01 m3 register would swallow a slow flow's
        # per-tick increments if each tick rounded.
        if "flowmeter_count_m3" not in self.pinned:
            v["flowmeter_count_m3"] = float(v.get("flowmeter_count_m3", 0.0)) + gas
        counted = gas * float(p.get("pulse_share", 1.0))
        if "controller_count_m3" not in self.pinned:
            ctrl = float(v.get("controller_count_m3", 0.0)) + counted
            v["controller_count_m3"] = float(v["flowmeter_count_m3"]) if resync else ctrl
        if "balance_m3" not in self.pinned:
            v["balance_m3"] = float(v.get("balance_m3", 0.0)) - counted


BEHAVIOURS = {
    "flowmeter": Flowmeter,
    "flow_controller": FlowController,
}


def for_family(family: str, params: dict | None = None) -> Behaviour:
    return BEHAVIOURS.get(family, Behaviour)(params)
