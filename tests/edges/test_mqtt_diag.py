"""Issue 12, defect 8: diag over MQTT. Whoever can publish on the broker can
ask for it, so the reply carries what central monitoring needs (verdict,
each check's level and key) and nothing a stranger could use (config path,
pid, endpoints, disk figures, the MQTT user name); it opens no second broker
connection with the gateway's credentials; and it runs at most once a
minute. The local `edgegw diag` keeps its full detail and its broker login."""
from __future__ import annotations

import json

import pytest

from gateway.field.client import ControlClient
from gateway.field.requests import MQTT_DIAG_EVERY_S
from tests.support import wait_until

from .rig import Probe, Site

pytestmark = pytest.mark.integration

USER = "gw-hz0417-user"
PASSWORD = "s3cret pass"


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path, user=USER, password=PASSWORD)
    try:
        wait_until(lambda: (s.state_dir / "control.sock").exists() and s.connections_as("edgegw-t1"), 20,
                   "the gateway up and connected")
        yield s
    finally:
        s.close()


def test_diag_over_mqtt_is_trimmed_rate_limited_and_opens_no_second_connection(site):
    probe = Probe(site, "edgegw/t1/cmd/+/reply")
    try:
        raw, reply = probe.ask("edgegw/t1/cmd/diag", {"id": "d1"})
        assert reply["ok"] is True, reply
        result = reply["result"]
        checks = {(c["check"], c.get("bus") or c.get("device")): c for c in result["checks"]}
        assert checks[("broker", None)] == {"check": "broker", "level": "pass", "key": "dg.broker_ok"}
        assert checks[("device", "fm-01")]["key"].startswith("dg.dev_")
        assert {"config", "daemon", "port", "clock", "disk", "backlog", "bus"} <= {c for c, _ in checks}
        for c in result["checks"]:
            assert set(c) <= {"check", "level", "key", "bus", "device"}, c
        assert set(result["verdict"]) == {"level", "fails", "warns"}
        text = raw.decode()
        for secret in (USER, str(site.config), str(site.dir), str(site.gw.pid), str(site.port), "127.0.0.1",
                       "control.sock", "pid", "free"):
            assert secret not in text, f"{secret!r} is in the MQTT diag reply"
        # The daemon's own link answered for the broker: no login of its own.
        assert site.connections_as("edgegw-t1-diag") == 0

        # At most one per minute; a second one is refused with the wait.
        _, again = probe.ask("edgegw/t1/cmd/diag", {"id": "d2"})
        assert again["ok"] is False and again["code"] == "rate_limited"
        assert f"once every {MQTT_DIAG_EVERY_S:.0f} s" in again["error"]
    finally:
        probe.close()

    # The local diag, through the control socket, keeps every detail and
    # logs in to the broker as before (and this shows the count above can
    # see such a login).
    with ControlClient(site.state_dir / "control.sock", timeout=30) as c:
        full = c.request("diag")
    by = {x["check"]: x for x in full["checks"]}
    assert by["daemon"]["args"]["pid"] == site.gw.pid
    assert by["broker"]["args"]["user"] == USER
    assert by["config"]["args"]["path"] == str(site.config)
    assert json.dumps(full).count("text") > 0
    assert site.connections_as("edgegw-t1-diag") == 1
