"""End to end: the simulator on a pseudo-terminal, a real Mosquitto, and
`python -m gateway run`. Access events arrive with pseudonyms and the
registry's verdict, the registry is updated over its retained topic, a clear
on the controller starts a new epoch, a drifting controller clock is flagged,
and no raw card number appears in the published stream or the gateway's log."""
from __future__ import annotations

import json
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.doors.view import doorlog_view
from gateway.field.doorlog import render_doorlog
from tests.support import Broker, Subscriber, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VALID, EXPIRED, UNKNOWN, VIA_MQTT = 3000000017, 3000000018, 3000000019, 3000000020
CARDS = (VALID, EXPIRED, UNKNOWN, VIA_MQTT)

SCENARIO = f"""
[simulator]
seed = 3
tick_s = 0.1

[[bus]]
name = "doors"
kind = "pty"
link = "ttyE2E"
baudrate = 9600
parity = "N"

[[device]]
bus = "doors"
unit = 21
model = "door-controller"
name = "door-1"
[device.params]
serial = "DCE2E001"
capacity = 200
rate_per_min = 120
prefill = 25
cards = [{VALID}, {EXPIRED}, {UNKNOWN}]

[[event]]
t = 3
device = "door-1"
door = {{ add = [{{ event = "access_granted", door = 1, card = {EXPIRED} }},
                 {{ event = "access_granted", door = 2, card = {UNKNOWN} }},
                 {{ event = "door_forced_open", door = 2 }}] }}

[[event]]
t = 5
device = "door-1"
door = {{ add = [{{ event = "access_granted", door = 1, card = {VIA_MQTT} }}], clock_offset_s = 900 }}

[[event]]
t = 7
device = "door-1"
door = {{ clear = true }}
"""

REGISTRY = f"""card,holder_type,issued,holder_ref
{VALID},tenant,2026-01-01,B-1203
{EXPIRED},owner,2020-01-01,A-0101
"""


def publish_retained(port: int, topic: str, payload: bytes) -> None:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="e2e-registry")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_door_events_end_to_end(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    (tmp_path / "cards.csv").write_text(REGISTRY)
    publish_retained(broker.port, "edgegw/t1/config/cards", json.dumps({"entries": [
        {"card": str(VIA_MQTT), "holder_type": "parking", "issued": time.strftime("%Y-%m-%d")}]}).encode())
    sim, where = start_sim(tmp_path, SCENARIO)
    cfg = gateway_config(tmp_path, broker.port, where["buses"],
                         [{"name": "door-1", "bus": "doors", "unit": 21, "model": "door-controller",
                           "poll_s": 0.3}],
                         extra='[doors]\nregistry_csv = "cards.csv"\nclock_skew_warn_s = 300\n')
    gw = start_gateway(cfg)
    try:
        def done(s):
            resets = [b for b in s.select("/door-1/event") if b.get("type") == "log_reset"]
            return len(resets) >= 2 and any(b.get("clock_skew_s") for b in s.select("/door-1/event"))
        sub.wait_for(done, 30, "first contact, clock skew and the clear")
        time.sleep(1.0)
        assert stop_proc(gw) == 0
    finally:
        stop_proc(gw)
        stop_proc(sim)
    events = {}
    for b in sub.select("/door-1/event"):
        events.setdefault(b["seq"], b)               # QoS 1 may deliver twice: same seq
    events = [events[s] for s in sorted(events)]
    access = [e for e in events if e["type"] == "access"]
    ids = [e["id"] for e in access]
    assert len(ids) == len(set(ids))                 # no duplicate event
    assert [e["reason"] for e in events if e["type"] == "log_reset"][:2] == ["first_contact", "index_backwards"]
    epoch1 = [e["index"] for e in access if e["epoch"] == 1]
    assert epoch1 == list(range(1, len(epoch1) + 1))   # no gap, in order
    epoch2 = [e for e in access if e["epoch"] == 2]
    assert epoch2 and epoch2[0]["index"] == 1 and epoch2[0]["event"] == "log_cleared"
    for e in access:
        assert e["v"] == 1 and e["controller"] == "door-1" and e["serial"] == "DCE2E001"
        assert e["id"] == f"DCE2E001/{e['epoch']}/{e['index']}"
    by_status = {e["card_status"] for e in access if e["card"]}
    assert {"valid", "expired", "unknown"} <= by_status
    mqtt_card = [e for e in access if e.get("holder_type") == "parking"]
    assert mqtt_card and mqtt_card[0]["card_valid"] is True
    used = [e for e in events if e["type"] == "expired_card_used"]
    assert {"expired", "unknown"} <= {e["reason"] for e in used}
    skewed = [e for e in access if "clock_skew_s" in e]
    assert skewed and all(850 <= e["clock_skew_s"] <= 950 for e in skewed)
    assert any(e["event"] == "door_forced_open" and e["card"] is None for e in access)
    # retained state: door values next to the status block (refreshed with the
    # daemon's state cadence, so the epoch may still be the first one here)
    state = [b for b in sub.select("/door-1/state")][-1]
    assert state["values"]["log_epoch"] in (1, 2) and state["values"]["log_cursor_index"] >= 1
    assert {"id", "event", "door", "card", "device_ts", "epoch"} <= set(state["values"]["last_event"])
    assert state["values"]["serial_number"] == "DCE2E001"
    saved = json.loads((tmp_path / "state" / "state.json").read_text())       # flushed at stop
    door1 = next(d["value"] for d in saved["devices"].values() if d["key"] == "door-1")
    assert door1["values"]["log_epoch"] == 2 and door1["values"]["last_event"]["epoch"] == 2
    # personal data: no raw card number anywhere the gateway writes text
    with sub.lock:
        # everything the gateway published (the registry topic is the operator's input)
        raw_stream = b"".join(json.dumps(m[2]).encode() for m in sub.messages if "/config/" not in m[1])
    log_text = (tmp_path / "gateway.log").read_text()
    for card in CARDS:
        assert str(card).encode() not in raw_stream
        assert str(card) not in log_text
    for f in (tmp_path / "state").iterdir():
        if f.name.startswith(("outbox.db", "doors.db", "state.json")):
            assert not any(str(c).encode() in f.read_bytes() for c in CARDS), f
    # and the field command's view of it, from the state folder
    view = doorlog_view(tmp_path / "state", "door-1")
    assert view["epoch"] == 2 and view["events"] and view["resets"][0]["reason"] == "index_backwards"
    assert "door-1" in render_doorlog(view)
    sub.close()
    broker.stop()
