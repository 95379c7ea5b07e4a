"""Build a simulated device for a model, with the behaviour of its family."""
from __future__ import annotations

import random

from protocols.models import Model

from .behaviours import for_family
from .device import SimulatedDevice
from .door import make_door_device
from .miu_device import MiuBehaviour


def make_device(model: Model, spec: dict, rng: random.Random) -> SimulatedDevice:
    if model.family == "door_controller":
        # A log ring behind a select-then-read window, not a register image.
        return make_door_device(model, spec, rng)
    unit = int(spec["unit"])
    dev = SimulatedDevice(model=model, unit=unit, name=spec.get("name", f"{model.id}-{unit}"), rng=rng)
    if model.family == "residential_meter" and model.id == "meihua-ic":
        # The meter interface unit's own firmware core is the simulator, so
        # the meter's behaviour exists once (firmware/miu).
        dev.behaviour = MiuBehaviour(dev, spec.get("params", {}))
    else:
        dev.behaviour = for_family(model.family, spec.get("params", {}))
    if model.identify and "field" in model.identify:
        dev.values[model.identify["field"]] = model.identify.get("equals", 0)
    for k, v in spec.get("values", {}).items():
        dev.values[k] = v  # a starting value; the behaviour moves it on
    for k, v in spec.get("pin", {}).items():
        dev.values[k] = v  # held as set until an event unpins it
        dev.behaviour.pinned.add(k)
    return dev
