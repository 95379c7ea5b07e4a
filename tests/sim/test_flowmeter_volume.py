"""The simulated corrector's totals: counted exactly at every tick, and
quantised (to the register's 0.001 m3) only on the wire. A slow flow must
still count, and a steady one must count what the flow says."""
from __future__ import annotations

import random

import pytest

from protocols.modbus import types
from protocols.models import load_models
from simulators.families import make_device

TICK_S = 0.2


def wire(dev, name: str) -> float:
    """The total as a master decodes it from the registers."""
    f = next(f for f in dev.model.fields if f.name == name)
    image = dev.registers(f.function)
    return types.decode(f, [image[f.address + i] for i in range(types.register_count(f))])


def meter(flow_m3h: float):
    model = load_models()["turbine-evc"]
    return make_device(model, {"unit": 1, "values": {"volume_work_m3": 1000.0, "volume_std_m3": 2000.0},
                               "pin": {"flow_m3h": flow_m3h, "temperature_C": 20.0,
                                       "pressure_kPa": 101.325}}, random.Random(1))


@pytest.mark.parametrize("flow", [40.5, 8.0, 1.0, 163.7])
def test_totals_count_the_flow_over_2_s_and_6_s(flow):
    for seconds in (2.0, 6.0):
        dev = meter(flow)
        for _ in range(round(seconds / TICK_S)):
            dev.tick(TICK_S)
        expected = flow * seconds / 3600.0
        # At 20 C and 101.325 kPa the standard volume is the working volume.
        for name, start in (("volume_work_m3", 1000.0), ("volume_std_m3", 2000.0)):
            counted = wire(dev, name) - start
            assert counted == pytest.approx(expected, abs=0.0005 + 1e-9), (name, flow, seconds, counted)


def test_a_slow_flow_never_stands_still_for_long():
    # 8 m3/h is 0.00044 m3 a tick: rounding each tick to 0.001 counted nothing.
    dev = meter(8.0)
    seen = [wire(dev, "volume_work_m3")]
    for _ in range(30):  # 6 s
        dev.tick(TICK_S)
        seen.append(wire(dev, "volume_work_m3"))
    assert seen == sorted(seen)
    assert seen[-1] - seen[0] == pytest.approx(8.0 * 6 / 3600, abs=0.0005 + 1e-9)
    # 0.001 m3 is 0.45 s at 8 m3/h: the register moves at least every 3 ticks.
    steps = [i for i in range(1, len(seen)) if seen[i] > seen[i - 1]]
    assert max(b - a for a, b in zip([0] + steps, steps + [30], strict=True)) <= 3


def test_one_hour_at_40_5_counts_40_5_m3():
    dev = meter(40.5)
    for _ in range(int(3600 / TICK_S)):
        dev.tick(TICK_S)
    assert wire(dev, "volume_work_m3") - 1000.0 == pytest.approx(40.5, abs=0.001)
