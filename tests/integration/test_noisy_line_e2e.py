"""A noisy RS-485 line end to end: no wrong value, every failure counted as
what it is.

The simulator's noisy line (simulators/noise.py, relay.py) damages a third
of the answers of three turbine meters: bits flipped, bytes lost, garbage
around the frame, frames cut short, answers after the gateway's timeout, no
answer. `python -m gateway run` polls them through the real pymodbus client
and publishes to a real Mosquitto. Values are pinned, so any other value
is a wrong one (the same check as test_lying_slave.py).
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.integration.test_lying_slave import PINNED, injected, wrong_values
from tests.support import ROOT, Broker, Subscriber, gateway_config, start_sim, stop_proc

pytestmark = pytest.mark.integration

NOISE = ("noise = { bit_flip = 0.06, drop_byte = 0.06, garbage = 0.06, truncate = 0.06, "
         "late = 0.04, silence = 0.04, late_s = 0.35 }")
NAMES = ("fm-01", "fm-02", "fm-03")
RUN_S = 15


def scenario() -> str:
    pin = ", ".join(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}" for k, v in PINNED.items())
    out = '[simulator]\nseed = 21\ntick_s = 0.1\n\n[[bus]]\nname = "rs485-1"\nkind = "pty"\nlink = "ttyNOISY"\n'
    for unit, name in enumerate(NAMES, start=1):
        out += (f'\n[[device]]\nbus = "rs485-1"\nunit = {unit}\nmodel = "turbine-evc"\nname = "{name}"\n'
                f'values = {{ volume_std_m3 = 1000.5, volume_work_m3 = 400.25 }}\npin = {{ {pin} }}\n{NOISE}\n')
    return out


def test_a_noisy_line_publishes_no_wrong_value_and_counts_each_failure(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    sim, where = start_sim(tmp_path, scenario())
    devices = [{"name": n, "bus": "rs485-1", "unit": u, "model": "turbine-evc"} for u, n in enumerate(NAMES, 1)]
    cfg = gateway_config(tmp_path, broker.port, where["buses"], devices, poll_s=0.3, timeout_s=0.2)
    log = open(tmp_path / "gateway.log", "a")
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
                          cwd=ROOT, stdout=log, stderr=log)
    try:
        t0 = time.monotonic()
        sub.wait_for(lambda s: all(s.select("/telemetry", n) for n in NAMES), 30, "telemetry from all three")
        time.sleep(RUN_S)
        assert stop_proc(gw) == 0
        stop_proc(sim)
        elapsed = time.monotonic() - t0
        lies = injected((tmp_path / "sim.log").read_text())
        bodies = sub.select("/telemetry")
        status = [b for b in sub.select("/t1/status") if b.get("online") is False][-1]
    finally:
        stop_proc(gw)
        stop_proc(sim)
        sub.close()
        broker.stop()

    wrong = [(b["device"], wrong_values(b, elapsed)) for b in bodies if wrong_values(b, elapsed)]
    assert wrong == [], (wrong[:5], lies)
    total = {k: sum(c.get(k, 0) for c in lies.values()) for k in
             ("ok", "bit_flip", "drop_byte", "garbage", "truncate", "late", "silence")}
    assert len(bodies) >= total["ok"] - total["late"] - 3, (len(bodies), total)
    assert all(total[k] >= 2 for k in total), total

    bus = status["buses"]["rs485-1"]
    print("injected", total, "bus", bus, "telemetry", len(bodies))
    # A damaged frame is a CRC failure; no answer (silence, or later than
    # the timeout) is a timeout; garbage around a sound frame may cost
    # nothing. A late answer landing in a later request's window is the only
    # valid frame that answers the wrong request: a mismatch, at most once each.
    damaged = total["bit_flip"] + total["drop_byte"] + total["truncate"]
    silent = total["silence"] + total["late"]
    assert bus["mismatch"] <= total["late"], (bus, total)
    assert damaged - 1 <= bus["crc_errors"] + bus["mismatch"] <= damaged + total["garbage"], (bus, total)
    assert silent - total["late"] - 1 <= bus["timeouts"] <= silent, (bus, total)
    failures = bus["crc_errors"] + bus["timeouts"] + bus["mismatch"]
    assert bus["requests"] == bus["ok"] + failures + bus["exceptions"], bus
    text = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in text and "Exception in callback" not in text
