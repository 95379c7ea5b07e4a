"""A broker that flaps: the uplink between the gateway and Mosquitto is cut
and restored again and again, with the promise counted (promise.py).

The gateway reaches Mosquitto through a TCP relay on 127.0.0.1
(tests.support.Uplink) that goes away for 0.2-3 s at a time: sometimes cut
clean (both TCP connections closed, as when the modem drops the link),
sometimes stalled first (bytes swallowed in both directions, as on a dead
cellular link, until the gateway's keepalive gives up) and then cut. The
broker and the subscriber stay up, so whatever the broker acknowledged is
delivered and only the gateway's store-and-forward is under test: stopping
Mosquitto itself would also lose what it had acknowledged but not yet
written (see tests/integration/test_outage.py and test_outbox_crash.py).

Six meters on Modbus TCP are polled every 0.25 s; one toggles a debounce-2
fault every 4 s, so fault events are in flight when the link goes.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timezone

import pytest

from tests.edges.promise import (Figures, FlakyUplink, Watch, account, committed_polls, count_wrong,
                                 debounce_edges, delivered_edges, duration, pinned_meter, settle, tear_down,
                                 tracebacks)
from tests.support import Broker, Subscriber, free_port, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = [pytest.mark.integration, pytest.mark.edges]

N = 6
TOGGLER = "fm-06"


def scenario(port: int, run_s: float) -> str:
    out = ["[simulator]", "tick_s = 0.1", "", "[[bus]]", 'name = "tcp-1"', 'kind = "tcp"',
           f'listen = "127.0.0.1:{port}"', ""]
    for u in range(1, N + 1):
        out += ["[[device]]", 'bus = "tcp-1"', f"unit = {u}", 'model = "turbine-evc"', f'name = "fm-{u:02d}"',
                pinned_meter(), ""]
    t, on = 2.0, True
    while t < run_s:
        out += ["[[event]]", f"t = {t}", f'device = "{TOGGLER}"',
                f'bits = {{ field = "status_word", {"on" if on else "off"} = [2] }}', ""]
        t, on = t + 4.0, not on
    if not on:
        out += ["[[event]]", f"t = {t}", f'device = "{TOGGLER}"', 'bits = { field = "status_word", off = [2] }', ""]
    return "\n".join(out)


def fresh(body: dict) -> bool:
    ts = datetime.fromisoformat(body["ts"].replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - ts).total_seconds() < 1.5


def test_a_flapping_broker_loses_nothing(tmp_path):
    run_s = duration(30.0)
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    uplink = FlakyUplink(broker.port)
    sim, where = start_sim(tmp_path, scenario(free_port(), run_s + 10))
    devices = [{"name": f"fm-{u:02d}", "bus": "tcp-1", "unit": u, "model": "turbine-evc", "poll_s": 0.25}
               for u in range(1, N + 1)]
    devices[-1]["params"] = {"flap_count": 1000, "flap_window_s": 60}
    cfg = gateway_config(tmp_path, uplink.port, where["buses"], devices, timeout_s=0.5)
    fig = Figures("broker flaps (uplink cut/stalled)")
    rng = random.Random(4)
    cuts = stalls = 0
    gw = start_gateway(cfg)
    watch = Watch(gw)
    t0 = time.monotonic()
    try:
        sub.wait_for(lambda s: len(s.select("/telemetry")) >= N * 2, 30, "telemetry from all meters")
        time.sleep(3.0)
        watch.start()
        # Flap for the case's length, and on until the gateway has come back
        # over the relay at least 3 times (a slow start or long reconnect
        # back-offs can leave fewer in the length alone), bounded.
        while ((time.monotonic() - t0 < run_s or uplink.relayed < 4)
               and time.monotonic() - t0 < run_s + 120 and gw.poll() is None):
            if rng.random() < 0.3:
                uplink.stalled.set()        # a dead link: nothing moves, nothing closes
                stalls += 1
                time.sleep(rng.uniform(0.5, 7.0))
            uplink.down()
            uplink.stalled.clear()
            cuts += 1
            time.sleep(rng.uniform(0.2, 3.0))
            uplink.up()
            time.sleep(rng.uniform(0.3, 4.0))
        # Link back for good: let the backlog drain (readings taken now arrive)
        # (oldest first: once a reading taken just now arrives, everything
        # stored before it has been sent).
        back = len(sub.select("/telemetry"))
        assert settle(lambda: len(sub.select("/telemetry")) > back and fresh(sub.select("/telemetry")[-1]), 90), \
            "the backlog never drained"
        time.sleep(1.0)
        watch.end()
        fig.crashes = 0 if gw.poll() is None else 1
        assert stop_proc(gw) == 0, "the gateway did not stop cleanly"
        elapsed = time.monotonic() - t0
        watch.into(fig)
        fig.seconds = round(elapsed, 1)
        time.sleep(0.5)
    finally:
        tear_down(gw, sim, sub, broker, uplink)

    led = account(fig, sub, "edgegw/t1/status", tmp_path / "state")
    fig.tracebacks = tracebacks(tmp_path / "gateway.log")
    fig.wrong = count_wrong(led, elapsed, (0,), [f"fm-{u:02d}" for u in range(1, N)])
    fig.wrong += count_wrong(led, elapsed, (0, 4), [TOGGLER])
    expected = debounce_edges(committed_polls(sub, TOGGLER, "status_word", 2), 2)
    got = delivered_edges(sub, TOGGLER, "TEMP-SENSOR")
    connects = max(b.get("mqtt", {}).get("connects", 0) for b in sub.select("/t1/status"))
    fig.notes.update(cuts=cuts, stalls=stalls, mqtt_connects=connects, relayed=uplink.relayed, fault_edges=len(got),
                     telemetry=sum(1 for t, _b in led.by_seq.values() if t.endswith("/telemetry")))
    fig.report()
    assert got == expected, f"fault edges: delivered {got}, the committed polls give {expected}"
    assert len(expected) >= 2
    assert uplink.relayed >= 4, f"the link never really went away: {uplink.relayed} connections in all"
    fig.check()
