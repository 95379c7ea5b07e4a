"""A lying slave never gets a value published (issue 12, defect 2).

Real parts: the simulator process serving five turbine meters through the
noisy line (its relay, with the real pymodbus server behind it), `python -m
gateway run` with the real pymodbus client, a real Mosquitto, a subscriber.
Every hostile answer carries a valid CRC:

    fm-01  half its answers are FC04 frames answering the FC03 read, same byte count
    fm-02  half its answers carry unit 3's id
    fm-03  half its answers have a lying byte count (a register short, one too
           many, a stray byte, a byte short)
    fm-04  half its answers come twice, the second with other data, back to back
    fm-05  malicious: every answer is one of the above, in turn

Forged register data is the genuine data XOR 0x0101 (simulators/hostile.py):
it decodes, so a gateway that checks only the CRC publishes it. The meters'
values are pinned, so any other value in a telemetry message is a wrong one.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import time

import pytest

from tests.support import ROOT, Broker, Subscriber, gateway_config, start_sim, stop_proc

pytestmark = pytest.mark.integration

PINNED = {"flow_m3h": 36.0, "temperature_C": 21.5, "pressure_kPa": 350.0, "battery_V": 3.55,
          "serial_number": "EVC-A1", "status_word": 0}
START = {"volume_std_m3": 1000.5, "volume_work_m3": 400.25}
NOISE = {
    "fm-01": "noise = { wrong_function = 0.5 }",
    "fm-02": "noise = { wrong_unit = 0.5 }",
    "fm-03": "noise = { lying_count = 0.5 }",
    "fm-04": "noise = { double = 0.5, double_gap_s = 0.0 }",
    "fm-05": "malicious = true\nnoise = { double_gap_s = 0.0 }",
}
# Both answers of a double go out back to back: the gateway's 3.5-character
# wait (4 ms) must not depend on how this machine schedules the simulator.
# tests/integration/test_rtu_fuzz.py covers answers 0.5-1 ms apart.
RUN_S = 15


def scenario() -> str:
    pin = ", ".join(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in PINNED.items())
    head = '[simulator]\nseed = 12\ntick_s = 0.1\n\n[[bus]]\nname = "rs485-1"\nkind = "pty"\nlink = "ttyLIE"\n'
    devs = [f'\n[[device]]\nbus = "rs485-1"\nunit = {i}\nmodel = "turbine-evc"\nname = "{name}"\n'
            f'values = {{ volume_std_m3 = 1000.5, volume_work_m3 = 400.25 }}\npin = {{ {pin} }}\n{noise}\n'
            for i, (name, noise) in enumerate(NOISE.items(), start=1)]
    return head + "".join(devs)


def flow_std() -> float:
    return PINNED["flow_m3h"] * (PINNED["pressure_kPa"] / 101.325) * (293.15 / (273.15 + PINNED["temperature_C"]))


def wrong_values(body: dict, elapsed_s: float) -> dict:
    """Every value of a telemetry message that the meter did not report."""
    out = {}
    for k, v in body["values"].items():
        if k in PINNED:
            ok = v == PINNED[k]
        elif k in START:
            ok = START[k] <= v <= START[k] + flow_std() * (elapsed_s + 5) / 3600 + 0.002
        elif k == "flow_std_m3h":
            ok = v == pytest.approx(flow_std(), rel=1e-4)
        else:
            ok = False
        if not ok:
            out[k] = v
    return out


@pytest.fixture
def site(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    sim, where = start_sim(tmp_path, scenario())
    devices = [{"name": n, "bus": "rs485-1", "unit": i, "model": "turbine-evc"}
               for i, n in enumerate(NOISE, start=1)]
    cfg = gateway_config(tmp_path, broker.port, where["buses"], devices, poll_s=0.3, timeout_s=0.2)
    log = open(tmp_path / "gateway.log", "a")
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
                          cwd=ROOT, stdout=log, stderr=log)
    yield sub, gw, sim, tmp_path
    stop_proc(gw)
    stop_proc(sim)
    sub.close()
    broker.stop()


def injected(sim_log: str) -> dict[str, dict[str, int]]:
    """What the simulator's noisy line did, per device (logged when it stops)."""
    return {m.group(1): ast.literal_eval(m.group(2))
            for m in re.finditer(r"noise (\S+) \(unit \d+\): (\{.*\})", sim_log)}


def test_no_wrong_value_from_a_lying_slave_and_every_lie_counted(site):
    sub, gw, sim, tmp = site
    t0 = time.monotonic()
    sub.wait_for(lambda s: all(s.select("/telemetry", d) for d in ("fm-01", "fm-02", "fm-03", "fm-04")),
                 30, "telemetry from the four half-honest meters")
    time.sleep(RUN_S)
    assert stop_proc(gw) == 0, "the gateway did not stop cleanly"
    stop_proc(sim)
    elapsed = time.monotonic() - t0
    lies = injected((tmp / "sim.log").read_text())

    wrong, good = {}, {}
    for body in sub.select("/telemetry"):
        name = body["device"]
        bad = wrong_values(body, elapsed)
        if bad:
            wrong.setdefault(name, []).append(bad)
        else:
            good[name] = good.get(name, 0) + 1
    summary = {n: (good.get(n, 0), len(wrong.get(n, [])), lies.get(n)) for n in NOISE}
    assert wrong == {}, f"wrong values published (good, wrong, injected): {summary}"
    for name in ("fm-01", "fm-02", "fm-03", "fm-04"):
        assert good.get(name, 0) >= 10, summary
        assert lies[name].get("ok", 0) >= 10 and sum(lies[name].values()) - lies[name]["ok"] >= 5, summary
    assert "fm-05" not in good, "the always-lying meter got a reading published"
    assert set(lies["fm-05"]) == {"wrong_function", "wrong_unit", "lying_count", "double"}

    # Counted, as what they are: a valid frame that does not answer the
    # request is a mismatch, not a CRC error and not a timeout.
    status = [b for b in sub.select("/t1/status") if b.get("online") is False][-1]
    bus = status["buses"]["rs485-1"]
    hostile = sum(n for counts in lies.values() for k, n in counts.items() if k != "ok")
    assert hostile - 1 <= bus["mismatch"] <= hostile, (bus, lies)   # one answer may be in flight at stop
    assert bus["crc_errors"] == 0 and bus["timeouts"] == 0, bus
    for name in NOISE:
        counters = sub.select("/state", name)[-1]["counters"]
        assert counters.get("mismatch", 0) >= 1, (name, counters)
        assert not {"crc", "timeout", "short_response"} & set(counters), (name, counters)
    last = sub.select("/state", "fm-05")[-1]
    assert last["availability"] == "unavailable" and last["last_error"] == "mismatch"
    # A forged status word raises nothing; a run of untrustworthy answers
    # is no reading at all, which NO-RESPONSE reports after 3 intervals.
    codes = {b["code"] for b in sub.select("/event")}
    assert codes <= {"NO-RESPONSE"}, codes

    log = (tmp / "gateway.log").read_text()
    assert "Traceback" not in log and "Exception in callback" not in log, log[-3000:]
