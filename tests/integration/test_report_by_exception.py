"""Report by exception end to end: a quiet meter costs a heartbeat, not a message per poll."""
from __future__ import annotations

import time

import pytest

from tests.integration.test_end_to_end import DEVICES, SCENARIO
from tests.support import Broker, Subscriber, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = pytest.mark.integration


def test_a_device_reporting_by_exception_sends_heartbeats_and_changes_only(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, "edgegw/t1/#")
    devices = [dict(d, poll_s=0.5) for d in DEVICES]
    # fm-01's volumes creep up (12.5 m3/h) while everything else is pinned:
    # within these deadbands nothing it reads is news for 20 s.
    devices[0]["report"] = {"heartbeat_s": 6, "deadband": {"volume_std_m3": 50, "volume_work_m3": 50}}
    sim = gw = None
    try:
        sim, where = start_sim(tmp_path, SCENARIO)
        gw = start_gateway(gateway_config(tmp_path, broker.port, where["buses"], devices))
        sub.wait_for(lambda s: s.select("/telemetry", device="fm-01"), 20, "first telemetry")
        t0 = time.monotonic()
        time.sleep(14)
        window = [(t, b) for t, b in sub.timed("/telemetry") if t >= t0]
        quiet = [b for t, b in window if b["device"] == "fm-01"]
        chatty = [b for t, b in window if b["device"] == "fm-02"]
        assert 2 <= len(quiet) <= 3, len(quiet)          # heartbeats at 6 and 12 s
        assert len(chatty) >= 20                          # every poll, as before
        assert all(b["quality"] == "good" and "flow_m3h" in b["values"] for b in quiet)
        # the retained state still comes, and carries the latest values
        assert sub.select("/fm-01/state")[-1]["values"]["flow_m3h"] == 12.5
    finally:
        sub.close()
        stop_proc(gw)
        stop_proc(sim)
        broker.stop()
