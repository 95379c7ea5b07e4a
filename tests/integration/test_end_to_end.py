"""Foundation, end to end with real parts: the simulator serving three
flowmeters on a pseudo-terminal (real pymodbus server), `edgegw run` (real
pymodbus client), a real Mosquitto on 127.0.0.1, and a subscriber."""
from __future__ import annotations

import signal
import time

import pytest

from tests.support import Broker, Subscriber, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = pytest.mark.integration

SCENARIO = """
[simulator]
seed = 3
tick_s = 0.1

[[bus]]
name = "rs485-1"
kind = "pty"
link = "ttyA"

[[device]]
bus = "rs485-1"
unit = 1
model = "turbine-evc"
name = "fm-01"
values = { volume_std_m3 = 1000.5, volume_work_m3 = 400.25 }
pin = { flow_m3h = 12.5, temperature_C = 21.5, pressure_kPa = 350.0, battery_V = 3.55, serial_number = "EVC-A1" }

[[device]]
bus = "rs485-1"
unit = 2
model = "turbine-evc"
name = "fm-02"
pin = { flow_m3h = 30.0, temperature_C = 10.0, pressure_kPa = 200.0, battery_V = 3.6 }

[[device]]
bus = "rs485-1"
unit = 3
model = "turbine-evc"
name = "fm-03"
pin = { flow_m3h = 60.0, temperature_C = 5.0, pressure_kPa = 250.0, battery_V = 3.6 }
"""

DEVICES = [{"name": f"fm-0{u}", "bus": "rs485-1", "unit": u, "model": "turbine-evc"} for u in (1, 2, 3)]


@pytest.fixture
def site(tmp_path):
    broker = Broker(tmp_path).start()
    procs = []

    def run(scenario: str = SCENARIO, devices=DEVICES, **kw):
        sim, where = start_sim(tmp_path, scenario)
        procs.append(sim)
        cfg = gateway_config(tmp_path, broker.port, where["buses"], devices, **kw)
        gw = start_gateway(cfg)
        procs.append(gw)
        return gw, sim

    sub = Subscriber(broker.port)
    yield broker, sub, run, tmp_path
    sub.close()
    for p in reversed(procs):
        stop_proc(p)
    broker.stop()


def test_status_state_and_telemetry_for_three_units(site):
    broker, sub, run, _ = site
    gw, _sim = run()
    sub.wait_for(lambda s: all(s.select("/telemetry", d["name"]) for d in DEVICES), 20,
                 "telemetry from all three units")
    status = sub.select("/t1/status")
    assert status and status[-1]["online"] is True
    assert {"v", "seq", "ts", "ts_synced"} <= status[-1].keys()

    t = sub.select("/telemetry", "fm-01")[-1]
    assert t["v"] == 1 and isinstance(t["seq"], int) and t["ts"].endswith("Z")
    assert t["quality"] == "good"
    vals = t["values"]
    assert vals["flow_m3h"] == 12.5
    assert vals["temperature_C"] == 21.5
    assert vals["pressure_kPa"] == 350.0
    assert vals["battery_V"] == 3.55
    assert vals["serial_number"] == "EVC-A1"
    assert vals["volume_std_m3"] >= 1000.5
    assert "model_code" not in vals  # publish = false in the model

    states = {d["name"]: sub.select("/state", d["name"])[-1] for d in DEVICES}
    for name, st in states.items():
        assert st["availability"] == "online", name
        assert st["values"]["flow_m3h"] > 0
    assert states["fm-02"]["values"]["temperature_C"] == 10.0

    # Totals only increase, and seq is strictly increasing across the stream.
    vols = [b["values"]["volume_std_m3"] for b in sub.select("/telemetry", "fm-01")]
    assert vols == sorted(vols)
    seqs = [b["seq"] for b in sub.select() if b.get("seq") is not None]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    # A fresh subscriber gets the retained status and states.
    late = Subscriber(broker.port)
    try:
        late.wait_for(lambda s: s.select("/t1/status") and len(s.select("/state")) >= 3, 10,
                      "retained status and states")
    finally:
        late.close()


def test_killed_gateway_leaves_its_last_will(site):
    _broker, sub, run, _ = site
    gw, _sim = run()
    sub.wait_for(lambda s: s.select("/telemetry"), 20, "first telemetry")
    gw.send_signal(signal.SIGKILL)
    gw.wait(5)
    sub.wait_for(lambda s: any(b.get("online") is False for b in s.select("/t1/status")), 15,
                 "Last Will: status online false")
    will = [b for b in sub.select("/t1/status") if b.get("online") is False][-1]
    assert will["reason"] == "connection lost"


def test_clean_stop_publishes_offline_and_flushes(site):
    _broker, sub, run, tmp = site
    gw, _sim = run()
    sub.wait_for(lambda s: len(s.select("/telemetry")) >= 6, 20, "telemetry")
    assert stop_proc(gw) == 0
    offline = [b for b in sub.select("/t1/status") if b.get("online") is False]
    assert offline and offline[-1]["reason"] == "stopped"
    log = (tmp / "gateway.log").read_text()
    assert "stopped;" in log


def test_silent_unit_is_unavailable_alone_and_others_keep_their_rate(site):
    scenario = SCENARIO + """
[[event]]
t = 4
device = "fm-02"
silent = true
"""
    _broker, sub, run, _ = site
    run(scenario, poll_s=0.5)
    sub.wait_for(lambda s: any(b["availability"] == "unavailable" for b in s.select("/state", "fm-02")),
                 30, "fm-02 unavailable")
    t0 = time.monotonic()
    time.sleep(5)
    t1 = time.monotonic()
    for name in ("fm-01", "fm-03"):
        assert sub.select("/state", name)[-1]["availability"] == "online"
        n = sum(1 for t, _ in sub.timed("/telemetry", name) if t0 <= t <= t1)
        # 0.5 s interval over 5 s is 10 polls; a silent neighbour may cost
        # each cycle one 0.2 s timeout at most, so well over half must remain.
        assert n >= 6, f"{name} got {n} readings in 5 s next to a silent unit"
    st = sub.select("/state", "fm-02")[-1]
    assert st["last_error"] == "timeout"
    assert st["counters"]["timeout"] >= 3
    # The last known values stay in the state, marked by availability, and
    # no telemetry is invented for the silent unit.
    late = [b for t, b in sub.timed("/telemetry", "fm-02") if t > t0]
    assert late == []


def test_unplugged_adapter_is_recovered_without_restart(site):
    scenario = SCENARIO + """
[[event]]
t = 4
bus = "rs485-1"
unplug_s = 3
"""
    _broker, sub, run, tmp = site
    gw, _sim = run(scenario)
    sub.wait_for(lambda s: s.select("/telemetry", "fm-01"), 20, "first telemetry")
    # Wait until the gateway saw the port vanish, then until data flows again.
    def saw_down(_s):
        return "cannot open" in (tmp / "gateway.log").read_text() or \
            "connection lost" in (tmp / "gateway.log").read_text()
    sub.wait_for(saw_down, 20, "the gateway noticing the unplugged adapter")
    mark = time.monotonic()
    sub.wait_for(lambda s: any(t > mark + 0.5 for t, _ in s.timed("/telemetry", "fm-01")), 30,
                 "telemetry after the adapter came back")
    assert gw.poll() is None, "the gateway restarted or died"
    assert sub.select("/state", "fm-01")[-1]["availability"] == "online"


def test_line_noise_and_refused_spans_are_counted_never_published(site):
    """fm-01 answers a third of its frames with a broken CRC; fm-02 refuses
    reads through unmapped registers (exception 02), so the planner's
    coalesced read must fall back to smaller reads; fm-03 reports an
    impossible temperature (open sensor: -273 C)."""
    scenario = SCENARIO.replace('name = "fm-01"\n', 'name = "fm-01"\n', 1) + """
[[event]]
t = 0
device = "fm-01"
garble_rate = 0.33

[[event]]
t = 0
device = "fm-02"
strict_holes = true

[[event]]
t = 0
device = "fm-03"
set = { temperature_C = -273.0 }
"""
    _broker, sub, run, tmp = site
    run(scenario, timeout_s=0.2)
    sub.wait_for(lambda s: len(s.select("/telemetry", "fm-02")) >= 4 and len(s.select("/telemetry", "fm-01")) >= 4
                 and len(s.select("/telemetry", "fm-03")) >= 4, 30, "readings despite noise")
    time.sleep(2)
    sub.wait_for(lambda s: any(b["counters"].get("crc", 0) >= 1 for b in s.select("/state", "fm-01")), 10,
                 "a state counting CRC errors")
    for t in sub.select("/telemetry", "fm-01"):
        assert t["values"].get("temperature_C", 21.5) == 21.5  # never a corrupted value
    # fm-02: every field arrives after the fall-back split.
    t2 = sub.select("/telemetry", "fm-02")[-1]
    assert t2["quality"] == "good" and t2["values"]["serial_number"] == ""
    assert "splitting" in (tmp / "gateway.log").read_text()
    # fm-03: the impossible value is not published; quality says why.
    t3 = sub.select("/telemetry", "fm-03")[-1]
    assert "temperature_C" not in t3["values"]
    assert t3["quality"] == "partial" and t3["errors"]["temperature_C"] == "out_of_range"
    sub.wait_for(lambda s: s.select("/state", "fm-03")[-1]["last_error"] == "out_of_range", 10,
                 "the state naming the impossible value")


def test_modbus_tcp_bus(site):
    from tests.support import free_port
    port = free_port()
    scenario = SCENARIO.replace('kind = "pty"\nlink = "ttyA"', f'kind = "tcp"\nlisten = "127.0.0.1:{port}"')
    _broker, sub, run, _ = site
    run(scenario)
    sub.wait_for(lambda s: all(s.select("/telemetry", d["name"]) for d in DEVICES), 20, "telemetry over TCP")
    assert sub.select("/telemetry", "fm-01")[-1]["values"]["pressure_kPa"] == 350.0
