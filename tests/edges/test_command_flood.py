"""Issue 12, defect 4: a flood of MQTT commands must not stall polling.

Real parts: Mosquitto on 127.0.0.1, the simulator on a pseudo-terminal,
`edgegw run`, and a flooding paho client in a process of its own. The issue
saw 10,000 commands in 10 s stall a Pi for 3.9 s; this box is several times
faster than a Pi, and at that pace the loop kept up here (largest gap 0.8 s
before the fix), so the same 10,000 go in 2 s: without the rate limit that
stopped readings for 2.3 s and their arrival for 3.7 s. What is asserted is a gap in the data (the largest
gap between the `ts` of consecutive readings of a meter polled every 0.5 s),
not a timing of code; and that every command beyond the rate limit is
refused and counted, with a bounded number of replies and log lines."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime

import pytest

from gateway.field.client import ControlClient
from gateway.field.commands import RATE_BURST, RATE_PER_S
from tests.support import ROOT, Broker, Subscriber, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLL_S = 0.5
FLOOD_N = 10_000
FLOOD_S = 2.0   # see the docstring: 10 s on a Pi, 2 s on this faster box

SCENARIO = """
[simulator]
seed = 5
tick_s = 0.2

[[bus]]
name = "rs485-1"
kind = "pty"
link = "ttyF"

[[device]]
bus = "rs485-1"
unit = 1
model = "turbine-evc"
name = "fm-01"
pin = { flow_m3h = 12.5, temperature_C = 21.5, pressure_kPa = 350.0, battery_V = 3.55 }

[[device]]
bus = "rs485-1"
unit = 2
model = "turbine-evc"
name = "fm-02"
pin = { flow_m3h = 30.0, temperature_C = 10.0, pressure_kPa = 200.0, battery_V = 3.6 }
"""

DEVICES = [{"name": f"fm-0{u}", "bus": "rs485-1", "unit": u, "model": "turbine-evc"} for u in (1, 2)]


def _ts(body: dict) -> float:
    return datetime.fromisoformat(body["ts"]).timestamp()


def _largest_gap(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:])), default=float("inf"))


@pytest.fixture
def site(tmp_path):
    broker = Broker(tmp_path).start()
    sim, where = start_sim(tmp_path, SCENARIO)
    cfg = gateway_config(tmp_path, broker.port, where["buses"], DEVICES, poll_s=POLL_S)
    gw = start_gateway(cfg)
    sub = Subscriber(broker.port)
    try:
        yield broker, sub, gw, tmp_path
    finally:
        sub.close()
        for p in (gw, sim):
            stop_proc(p)
        broker.stop()


def test_a_command_flood_does_not_stall_polling_and_refusals_are_counted(site):
    broker, sub, gw, tmp = site
    sub.wait_for(lambda s: len(s.select("/telemetry", "fm-01")) >= 6, 30, "steady telemetry from fm-01")

    t_start = time.time()
    m_start = time.monotonic()
    flood = subprocess.run([sys.executable, "-m", "tests.edges.flooder", str(broker.port), "edgegw/t1/cmd",
                            str(FLOOD_N), str(FLOOD_S)], cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert flood.returncode == 0, flood.stderr
    sent = json.loads(flood.stdout)
    t_end = time.time()
    m_end = time.monotonic()
    # The window closes with the first reading well after the flood, so a
    # stall that outlasts the flood is measured in full.
    sub.wait_for(lambda s: any(_ts(b) > t_end + 1 for b in s.select("/telemetry", "fm-01")), 60,
                 "a reading of fm-01 after the flood")
    m_after = time.monotonic()

    every = sorted(_ts(b) for b in sub.select("/telemetry", "fm-01"))
    first = max(i for i, t in enumerate(every) if t <= t_start)
    last = min(i for i, t in enumerate(every) if t > t_end + 1)
    readings = every[first:last + 1]
    arrived = [t for t, _b in sub.timed("/telemetry", "fm-01")]
    a_first = max(i for i, t in enumerate(arrived) if t <= m_start)
    arrivals = [t for t in arrived[a_first:] if t <= m_after]
    gap, arrival_gap = _largest_gap(readings), _largest_gap(arrivals)
    replies = [b for b in sub.select("/reply") if b.get("cmd") is not None]
    print(f"\nflood: {sent}; fm-01 readings during it: {len(readings)}, largest gap between readings "
          f"{gap:.2f} s, between arrivals {arrival_gap:.2f} s; replies: {len(replies)}")
    assert gw.poll() is None, "the gateway died under the flood"
    assert gap < 3 * POLL_S, f"readings of fm-01 stopped for {gap:.2f} s during the command flood"
    assert arrival_gap < 3 * POLL_S, f"telemetry of fm-01 stopped arriving for {arrival_gap:.2f} s"

    # Every command the broker delivered is accounted for, and all beyond the
    # bucket were refused without a reply (a reply costs a seq and a write).
    with ControlClient(tmp / "state" / "control.sock", timeout=30) as c:
        daemon = next(x for x in c.request("diag")["checks"] if x["check"] == "daemon")
    m_diag = time.monotonic()
    counts = daemon["args"]["commands"]
    print(f"counted: {counts}")
    assert counts["received"] == sent["acked"] == FLOOD_N
    allowed = RATE_BURST + RATE_PER_S * (m_diag - m_start)
    assert counts["received"] - counts["rate_limited"] <= allowed
    assert counts["rate_limited"] >= FLOOD_N - allowed
    assert len(replies) <= allowed
    # The retained status carries the same counts (zero at connect, before the flood).
    status = sub.select("/t1/status")
    assert status and status[0]["commands"] == {"received": 0, "ok": 0, "refused": 0, "rate_limited": 0}
    # ... and logged at a bounded rate, not once per refusal.
    log = (tmp / "gateway.log").read_text()
    limited_lines = [ln for ln in log.splitlines() if "rate limit" in ln]
    assert 1 <= len(limited_lines) <= 2 * ((m_end - m_start) / 10 + 2)
