"""The retained status topic: its cadence in steady state and its health fields."""
from __future__ import annotations

import time

import pytest

from tests.integration.test_end_to_end import DEVICES, SCENARIO
from tests.support import Broker, Subscriber, Uplink, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = pytest.mark.integration


def test_steady_state_status_is_not_sent_every_ten_seconds(tmp_path):
    """docs/mqtt.md: every 60 s in steady state, every 10 s only while a
    backlog drains. A healthy outbox always holds a message or two on their
    way to the broker; that is not a backlog."""
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, "edgegw/t1/status")
    # A cellular uplink: every PUBACK comes back 0.3 s later, so a few
    # messages are always in flight.
    uplink = Uplink(broker.port, delay_s=0.3)
    sim = gw = None
    try:
        sim, where = start_sim(tmp_path, SCENARIO)
        cfg = gateway_config(tmp_path, uplink.port, where["buses"],
                             [dict(d, poll_s=0.2) for d in DEVICES])
        gw = start_gateway(cfg)
        sub.wait_for(lambda s: s.select(), 20, "first status")
        first = time.monotonic()
        while time.monotonic() - first < 23:
            time.sleep(0.5)
            assert gw.poll() is None
        online = [b for b in sub.select() if b.get("online")]
        assert len(online) == 1, [(b.get("uptime_s"), b.get("backlog")) for b in online]
        body = online[0]
        assert body["store"] == {"health": "ok", "detail": None}
        lag = body["loop_lag_ms"]
        assert set(lag) >= {"p50", "p99", "p999", "max", "samples", "window_s"}
        assert 0 <= lag["p50"] <= lag["p99"] <= lag["p999"] <= lag["max"]
    finally:
        sub.close()
        stop_proc(gw)
        uplink.down()
        stop_proc(sim)
        broker.stop()
