"""`edgegw doorlog` with the daemon running (through the control socket) and
stopped (read-only from the state folder)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import ROOT, Broker, gateway_config, start_gateway, start_sim, stop_proc, wait_until

pytestmark = pytest.mark.integration


def doorlog(cfg, *extra):
    return subprocess.run([sys.executable, "-m", "gateway", "doorlog", *extra, "--config", str(cfg)],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)


def test_doorlog_running_and_stopped(tmp_path):
    broker = Broker(tmp_path).start()
    sim, where = start_sim(tmp_path, ROOT / "simulators/scenarios/doors.toml")
    cfg = gateway_config(tmp_path, broker.port, where["buses"], [
        {"name": "door-1", "bus": "rs485-doors", "unit": 11, "model": "door-controller", "poll_s": 1},
        {"name": "door-2", "bus": "rs485-doors", "unit": 12, "model": "door-controller", "poll_s": 1}])
    gw = start_gateway(cfg)
    try:
        def has_events():
            r = doorlog(cfg, "door-1", "--json")
            return r.returncode == 0 and json.loads(r.stdout)["events"] and r
        r = wait_until(has_events, 30, "door-1 events through the daemon", interval=0.5)
        view = json.loads(r.stdout)
        assert view["serial"] == "DC100001" and view["cursor"]["last_index"] >= 1
        assert view["resets"][0]["reason"] == "first_contact"
        text = doorlog(cfg, "door-1")
        assert text.returncode == 0 and "door controller door-1" in text.stdout
        unknown = doorlog(cfg, "fm-99")
        assert unknown.returncode == 2
        assert stop_proc(gw) == 0
        down = doorlog(cfg, "door-1", "--json")
        assert down.returncode == 2  # the daemon is not running: recorded view
        assert json.loads(down.stdout)["cursor"]["last_index"] == view["cursor"]["last_index"] or \
            json.loads(down.stdout)["cursor"]["last_index"] >= view["cursor"]["last_index"]
    finally:
        stop_proc(gw)
        stop_proc(sim)
        broker.stop()
