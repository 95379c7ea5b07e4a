"""Fault interpretation end to end: a scripted scenario through the simulator,
`edgegw run` and a real Mosquitto produces exactly the expected raise/clear
sequence, also across gateway restarts (a standing fault is not raised again;
a fault that cleared while the gateway was down produces its clear)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.support import (ROOT, Broker, Subscriber, gateway_config, start_gateway, start_sim,
                           stop_proc, wait_until)

pytestmark = pytest.mark.integration

STABLE = 'pin = { flow_m3h = 50.0, temperature_C = 15.0, pressure_kPa = 300.0, battery_V = 3.6 }'

SCENARIO = f"""
[simulator]
tick_s = 0.1

[[bus]]
name = "rs485-1"
kind = "pty"
link = "ttyF"

[[device]]
bus = "rs485-1"
unit = 1
model = "turbine-evc"
name = "fm-01"
{STABLE}

[[device]]
bus = "rs485-1"
unit = 2
model = "turbine-evc"
name = "fm-02"
{STABLE}

# fm-01: temperature sensor wire comes loose at 2 s and is repaired at 16 s.
[[event]]
t = 2
device = "fm-01"
bits = {{ field = "status_word", on = [2] }}

[[event]]
t = 16
device = "fm-01"
bits = {{ field = "status_word", off = [2] }}

# fm-02: flow stops (SLEEP, a state, not a failure) at 3 s.
[[event]]
t = 3
device = "fm-02"
set = {{ flow_m3h = 0.0 }}
"""

DEVICES = [{"name": n, "bus": "rs485-1", "unit": u, "model": "turbine-evc", "poll_s": 0.5}
           for n, u in (("fm-01", 1), ("fm-02", 2))]


def fault_events(sub, device):
    return [(b["code"], b["state"]) for b in sub.select("/event", device) if b.get("type") == "fault"]


def test_raise_and_clear_sequence_across_restarts(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    sim, where = start_sim(tmp_path, SCENARIO)
    t0 = time.monotonic()
    cfg = gateway_config(tmp_path, broker.port, where["buses"], DEVICES)
    gw = None
    try:
        gw = start_gateway(cfg)
        sub.wait_for(lambda s: ("TEMP-SENSOR", "raised") in fault_events(s, "fm-01"), 20,
                     "TEMP-SENSOR raised")
        sub.wait_for(lambda s: ("SLEEP", "raised") in fault_events(s, "fm-02"), 20, "SLEEP raised")
        ev = sub.select("/event", "fm-01")[-1]
        assert ev["ref"] == "D3" and ev["severity"] and ev["meaning"]["zh"] and ev["meaning"]["en"]
        assert ev["causes"]["en"] and ev["remedy"]["zh"] and ev["cleared_by"]["code"]
        st = sub.select("/state", "fm-01")[-1]
        assert [f["code"] for f in st["faults"]] == ["TEMP-SENSOR"]
        st2 = sub.select("/state", "fm-02")[-1]
        assert st2["states"] == ["SLEEP"] and st2["faults"] == []
        assert st2["availability"] == "online"

        # Restart while the fault stands: it must not be raised again.
        assert stop_proc(gw) == 0
        gw = start_gateway(cfg)
        mark = len(sub.select())
        sub.wait_for(lambda s: len([b for b in s.select("/telemetry", "fm-01")]) >
                     len([b for b in s.select()[:mark] if "values" in b and b.get("device") == "fm-01"]) + 3,
                     20, "polling after the first restart")
        assert fault_events(sub, "fm-01") == [("TEMP-SENSOR", "raised")]
        assert fault_events(sub, "fm-02") == [("SLEEP", "raised")]

        # Down while the sensor gets repaired (at 16 s): the clear comes after restart.
        assert stop_proc(gw) == 0
        gw = None
        wait_until(lambda: time.monotonic() - t0 > 17.5, 30, "the repair in the scenario")
        gw = start_gateway(cfg)
        sub.wait_for(lambda s: ("TEMP-SENSOR", "cleared") in fault_events(s, "fm-01"), 20,
                     "TEMP-SENSOR cleared after restart")
        time.sleep(1.5)
        assert fault_events(sub, "fm-01") == [("TEMP-SENSOR", "raised"), ("TEMP-SENSOR", "cleared")]
        assert fault_events(sub, "fm-02") == [("SLEEP", "raised")]
        assert sub.select("/state", "fm-01")[-1]["faults"] == []
    finally:
        stop_proc(gw)
        stop_proc(sim)
        sub.close()
        broker.stop()


def test_firmware_meter_through_the_gateway(tmp_path):
    """The meter interface unit firmware (on CPython behind a pty) polled by
    `edgegw run`: totals and the ERR-1 fault arrive as for the simulated meter."""
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    fw = subprocess.Popen([sys.executable, "-m", "miu.ptyserve", "--unit", "7", "--balance", "20000",
                           "--open", "--flow", "60", "--magnet-seconds", "12"],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    gw = None
    try:
        port = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = fw.stdout.readline()
            if line.startswith("PTY "):
                port = line.split()[1]
            if line.startswith("READY"):
                break
        assert port, "ptyserve did not report its pty"
        cfg = gateway_config(tmp_path, broker.port, {"miu": port},
                             [{"name": "m-07", "bus": "miu", "unit": 7, "model": "meihua-ic",
                               "poll_s": 0.5}], timeout_s=0.3)
        gw = start_gateway(cfg)
        # Before the magnet comes (12 s in) the meter counts: two readings with a rising volume.
        sub.wait_for(lambda s: len({b["values"].get("volume_m3") for b in s.select("/telemetry", "m-07")
                                    if "volume_m3" in b["values"]}) >= 2, 20, "the meter counting")
        vals = sub.select("/telemetry", "m-07")[-1]["values"]
        assert vals["balance_m3"] > 0 and vals["battery_V"] > 3.0 and "volume_m3" in vals
        sub.wait_for(lambda s: ("ERR-1", "raised") in fault_events(s, "m-07"), 30, "ERR-1 raised")
        ev = [b for b in sub.select("/event", "m-07") if b.get("code") == "ERR-1"][0]
        # The firmware keeps ERR-1 through a battery pull: only the fault card clears it.
        assert ev["model"] == "meihua-ic" and ev["ref"] == "A8" and ev["cleared_by"]["code"] == "fault_card"
        # The firmware shuts the valve on ERR-1; the ERR-1 row says so, and no
        # consequence row (a closed valve) is raised beside it.
        assert ev["valve_closed"] is True
        seen = len(sub.select("/telemetry", "m-07"))
        sub.wait_for(lambda s: len(s.select("/telemetry", "m-07")) >= seen + 2, 10, "two more readings")
        assert not {c for c, _ in fault_events(sub, "m-07")} & {"VALVE-CLOSED", "BALANCE-ZERO"}
        # (a poll that lost a field on a busy machine is partial: its volume is absent, not wrong)
        vols = [b["values"]["volume_m3"] for b in sub.select("/telemetry", "m-07") if "volume_m3" in b["values"]]
        assert vols == sorted(vols) and vols[-1] > vols[0], "the meter counted gas"
    finally:
        stop_proc(gw)
        stop_proc(fw)
        sub.close()
        broker.stop()
