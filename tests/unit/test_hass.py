"""Home Assistant discovery (gateway/deliver/hass.py).

Golden payloads for one turbine-evc and one mhcg device, every packaged model
checked against Home Assistant's own rules (topic pattern, accepted keys,
units and state classes per device class), and a round trip through a real
Mosquitto: discovery, retained state and status published, read back by a
paho-mqtt 2 client, and every template rendered the way Home Assistant does
(a sandboxed Jinja2 environment with `value` and `value_json`, the result
stripped, "None" meaning unknown), including the Last Will and the removal
of a device that left the config.
"""
from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from types import SimpleNamespace

import jinja2
import paho.mqtt.client as paho
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment
from paho.mqtt.enums import CallbackAPIVersion

from gateway.deliver import hass, payloads
from gateway.deliver.outbox import Outbox
from protocols.models import load_models
from tests.support import Broker, wait_until


GOLDEN = Path(__file__).resolve().parent.parent / "golden_hass"
BASE, GW, PREFIX = "edgegw/site-001", "site-001", "homeassistant"
MODELS = load_models()

# --------------------------------------------------------------------------- Home Assistant's rules
# Copied from Home Assistant (homeassistant/components/mqtt/discovery.py,
# mqtt/sensor.py, mqtt/binary_sensor.py, mqtt/schemas.py, sensor/const.py).
# HA drops a key it does not know without a word, so a misspelt key would
# silently lose a feature: every key used must be one of these.

TOPIC_MATCHER = re.compile(r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)"
                           r"?(?P<object_id>[a-zA-Z0-9_-]+)/config")
COMMON_KEYS = {"name", "unique_id", "state_topic", "qos", "availability", "availability_mode",
               "device", "origin", "value_template", "device_class", "entity_category",
               "json_attributes_topic", "json_attributes_template", "enabled_by_default", "icon",
               "encoding", "expire_after", "force_update"}
KEYS = {"sensor": COMMON_KEYS | {"state_class", "unit_of_measurement", "options",
                                 "suggested_display_precision", "last_reset_value_template"},
        "binary_sensor": COMMON_KEYS | {"payload_on", "payload_off", "off_delay"}}
DEVICE_KEYS = {"identifiers", "connections", "manufacturer", "model", "model_id", "name",
               "sw_version", "hw_version", "serial_number", "suggested_area", "via_device",
               "configuration_url"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
ENTITY_CATEGORIES = {"config", "diagnostic"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
BINARY_CLASSES = {"problem", "connectivity"}
# sensor/const.py DEVICE_CLASS_UNITS and DEVICE_CLASS_STATE_CLASSES, for the
# classes this gateway can use
UNITS = {"gas": {"m³", "ft³", "CCF"},
         "volume": {"ft³", "CCF", "MCF", "m³", "L", "mL", "gal", "fl. oz."},
         "volume_storage": {"ft³", "CCF", "MCF", "m³", "L", "mL", "gal", "fl. oz."},
         "volume_flow_rate": {"m³/h", "m³/min", "m³/s", "ft³/min", "L/h", "L/min", "L/s",
                              "gal/h", "gal/min", "gal/d", "mL/s"},
         "temperature": {"°C", "°F", "K"},
         "pressure": {"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "inH₂O", "psi", "MPa"},
         "voltage": {"mV", "V", "µV", "kV", "MV"},
         "duration": {"d", "h", "min", "s", "ms"},
         "enum": {None}}
SENSOR_STATE_CLASSES = {"gas": {"total", "total_increasing"},
                        "volume": {"total", "total_increasing"},
                        "volume_storage": {"measurement"},
                        "volume_flow_rate": {"measurement"},
                        "temperature": {"measurement"}, "pressure": {"measurement"},
                        "voltage": {"measurement"}, "duration": STATE_CLASSES, "enum": set()}
NUMERIC_CLASSES = set(UNITS) - {"enum"}


# --------------------------------------------------------------------------- a stand-in for HA

def numeric(cfg: dict) -> bool:
    """HA's SensorEntity._numeric_state_expected: a number, or text kept as is."""
    return (cfg.get("device_class") in NUMERIC_CLASSES or "state_class" in cfg
            or "unit_of_measurement" in cfg)


class HaView:
    """What Home Assistant shows for discovered entities, given the retained
    messages it received. Rendering follows homeassistant/helpers/template.py
    (`value`, `value_json` when the payload is JSON, result stripped) with
    StrictUndefined, stricter than HA's logging undefined: a template that
    touches a missing key fails here instead of logging a warning there."""

    def __init__(self, configs: dict[str, dict], retained: dict[str, str]):
        self.configs = configs
        self.retained = retained
        self.env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)

    def render(self, template: str, payload: str) -> str:
        variables = {"value": payload}
        try:
            variables["value_json"] = json.loads(payload)
        except ValueError:
            pass
        return self.env.from_string(template).render(**variables).strip()

    def available(self, cfg: dict) -> bool:
        entries = cfg.get("availability")
        if not entries:
            return True
        assert cfg["availability_mode"] == "all"
        state = []
        for a in entries:
            payload = self.retained.get(a["topic"])
            if payload is None:          # HA starts every topic as not available
                state.append(False)
                continue
            got = self.render(a["value_template"], payload)
            assert got in (a["payload_available"], a["payload_not_available"]), got
            state.append(got == a["payload_available"])
        return all(state)

    def state(self, topic: str):
        """(available, state, attributes) of the entity configured on ``topic``."""
        cfg = self.configs[topic]
        component = TOPIC_MATCHER.fullmatch(topic.removeprefix(PREFIX + "/"))["component"]
        payload = self.retained.get(cfg["state_topic"])
        value = attrs = None
        if payload is not None:
            raw = self.render(cfg["value_template"], payload)
            if component == "binary_sensor":
                assert raw in ("ON", "OFF", "None"), raw
                value = {"ON": True, "OFF": False, "None": None}[raw]
            elif raw != "None":
                value = float(raw) if numeric(cfg) else raw
                if cfg.get("device_class") == "enum":
                    assert raw in cfg["options"], raw
            if "json_attributes_template" in cfg:
                attrs = json.loads(self.render(cfg["json_attributes_template"],
                                               self.retained[cfg["json_attributes_topic"]]))
                assert isinstance(attrs, dict)
        return self.available(cfg), value, attrs


# --------------------------------------------------------------------------- fixtures

def _device(name, model_id, bus="rs485-1", unit=1, meta=None):
    return hass.Device(name, MODELS[model_id], bus, unit, meta or {})


def _by_topic(messages):
    return {t: p for t, p in messages}


def _golden(name: str, messages) -> None:
    path = GOLDEN / name
    actual = [{"topic": t, "payload": p} for t, p in messages]
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(actual, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 and review it"
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert [m["topic"] for m in actual] == [m["topic"] for m in expected]
    for a, e in zip(actual, expected):
        assert a == e, f"{a['topic']} differs from {path.name} (UPDATE_GOLDEN=1 to accept)"


def _state(name, model_id, *, available, values, active, bus="rs485-1", unit=1):
    """A retained state exactly as the gateway builds it (gateway payloads.state)."""
    d = SimpleNamespace(name=name, model=MODELS[model_id], available=available,
                        cfg=SimpleNamespace(unit=unit),
                        last_good_ts="2026-11-23T16:17:03.001Z",
                        last_error=None if available else "timeout",
                        last_error_ts=None if available else "2026-11-23T16:20:03.001Z",
                        last_values=values, counters={"polls": 512, "ok": 510, "timeout": 2})
    body = payloads.state(d, bus, active)
    body["seq"] = 1814
    return body


STATUS = {"v": 1, "seq": 1812, "ts": "2026-11-23T16:17:03.120Z", "ts_synced": True,
          "online": True, "gateway": GW, "site": "Riverside boiler house", "version": "0.1.0",
          "started": "2026-11-23T08:00:00.004Z", "uptime_s": 29583.1, "mqtt": {"connects": 3},
          "backlog": {"backlog_msgs": 7, "backlog_bytes": 2100, "oldest_age_s": None, "inflight": 4},
          "dropped": {"telemetry": 0, "state": 0, "event": 0}, "coalesced": 12,
          "store": {"health": "ok", "detail": None}, "buses": {},
          "devices": {"total": 3, "online": 2, "unavailable": 1, "with_faults": 3}}
WILL = {"v": 1, "seq": None, "ts": "2026-11-23T16:30:00.000Z", "ts_synced": True,
        "online": False, "gateway": GW, "reason": "connection lost"}
TURBINE_VALUES = {"volume_std_m3": 123456.789, "volume_work_m3": 45678.125, "flow_m3h": 40.702,
                  "flow_std_m3h": 121.3, "temperature_C": 15.0, "pressure_kPa": 300.1,
                  "battery_V": 3.6, "status_word": 4, "serial_number": "EVC0001", "model_code": 3001}
MHCG_VALUES = {"controller_count_m3": 1520.5, "flowmeter_count_m3": 1519.75, "balance_m3": -3.2,
               "battery_internal_V": 3.55, "battery_external_V": 0.0, "external_power": 0,
               "valve_state": 1, "status_word": 9, "error_code": 3, "card_fault_count": 2,
               "card_not_loaded_count": 0, "purchase_count": 17, "model_code": 2001}
SINCE = "2026-11-23T16:16:31.440Z"


# --------------------------------------------------------------------------- golden

def test_golden_turbine_evc():
    msgs = hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc", unit=3)], sw_version="0.1.0")
    _golden("gateway.json", msgs[:6])
    _golden("turbine-evc.json", msgs[6:])


def test_golden_mhcg():
    msgs = hass.discovery(BASE, GW, PREFIX, [("mc-01", MODELS["mhcg"], "rs485-1", 5)], sw_version="0.1.0")
    _golden("mhcg.json", msgs[6:])


def test_a_device_adds_only_its_own_messages():
    both = hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc"), _device("mc-01", "mhcg")])
    one = hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc")])
    assert both[:len(one)] == one
    assert all("/mc-01__" in t for t in hass.topics(both[len(one):]))


# --------------------------------------------------------------------------- HA's rules, every model

@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_every_model_passes_home_assistant_rules(model_id):
    model = MODELS[model_id]
    meta = {"extra_values": ["log_gaps", "log_resets", "clock_skew_s", "log_caught_up"]} \
        if model.family == "door_controller" else {}
    msgs = hass.discovery(BASE, GW, PREFIX, [_device("dev-1", model_id, meta=meta)], sw_version="0.1.0")
    env = ImmutableSandboxedEnvironment()
    topics = hass.topics(msgs)
    assert len(set(topics)) == len(topics)
    uids = [(t.split("/")[1], p["unique_id"]) for t, p in msgs]
    assert len(set(uids)) == len(uids)
    for topic, cfg in msgs:
        m = TOPIC_MATCHER.fullmatch(topic.removeprefix(PREFIX + "/"))
        assert m, topic
        component = m["component"]
        assert set(cfg) <= KEYS[component], set(cfg) - KEYS[component]
        assert set(cfg["device"]) <= DEVICE_KEYS
        assert set(cfg["origin"]) <= ORIGIN_KEYS and cfg["origin"]["name"] == "edgegw"
        for a in cfg.get("availability", []):
            assert set(a) <= AVAILABILITY_KEYS
        assert cfg.get("entity_category") in (None, *ENTITY_CATEGORIES)
        for key in ("value_template", "json_attributes_template"):
            if key in cfg:
                env.parse(cfg[key])          # raises on a syntax error
        dc = cfg.get("device_class")
        if component == "binary_sensor":
            assert dc in BINARY_CLASSES
            continue
        sc, unit = cfg.get("state_class"), cfg.get("unit_of_measurement")
        assert sc in (None, *STATE_CLASSES)
        if dc is not None:
            assert unit in UNITS[dc], (topic, dc, unit)
            if sc is not None:
                assert sc in SENSOR_STATE_CLASSES[dc], (topic, dc, sc)
        if dc == "enum":
            assert cfg["options"] and sc is None and unit is None
    faults = [f for f in model.faults if f.kind == "fault"]
    assert sum(t.split("/")[1] == "binary_sensor" for t in topics) == len(faults) + 1   # + gateway online
    published = [f.name for f in model.fields if f.publish] + list(meta.get("extra_values", []))
    values = [p for t, p in msgs if "__" in t and t.split("/")[1] == "sensor"
              and not t.endswith("__link-state/config")]
    assert [p["unique_id"].rsplit(".", 1)[1] for p in values] == published


def test_units_and_classes_of_the_contract_keys():
    msgs = _by_topic(hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc"),
                                                        _device("mc-01", "mhcg"),
                                                        _device("gd-01", "gas-alarm-controller")]))

    def cfg(dev, key):
        return msgs[f"{PREFIX}/sensor/{GW}/{dev}__{key}/config"]

    def kind(c):
        return c.get("device_class"), c.get("unit_of_measurement"), c.get("state_class")

    assert kind(cfg("fm-01", "volume_std_m3")) == ("gas", "m³", "total_increasing")
    assert kind(cfg("fm-01", "flow_m3h")) == ("volume_flow_rate", "m³/h", "measurement")
    assert kind(cfg("fm-01", "temperature_C")) == ("temperature", "°C", "measurement")
    assert kind(cfg("fm-01", "pressure_kPa")) == ("pressure", "kPa", "measurement")
    assert kind(cfg("fm-01", "battery_V")) == ("voltage", "V", "measurement")
    # a prepaid balance goes down with use: stored volume, not a meter total
    assert kind(cfg("mc-01", "balance_m3")) == ("volume_storage", "m³", "measurement")
    assert kind(cfg("mc-01", "purchase_count")) == (None, None, "total_increasing")
    # codes get no state class: a mean of a bit pattern means nothing
    assert kind(cfg("mc-01", "valve_state")) == (None, None, None)
    assert cfg("mc-01", "status_word")["entity_category"] == "diagnostic"
    assert kind(cfg("gd-01", "detector1_LEL")) == (None, "%LEL", "measurement")
    assert kind(cfg("fm-01", "serial_number")) == (None, None, None)


# --------------------------------------------------------------------------- ids

_device_names = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
_value_keys = st.from_regex(hass.VALUE_NAME, fullmatch=True)


@given(st.tuples(_device_names, st.one_of(_value_keys, st.text(min_size=1).map(hass._fault_part))),
       st.tuples(_device_names, st.one_of(_value_keys, st.text(min_size=1).map(hass._fault_part))))
def test_object_ids_are_injective(a, b):
    for dev, part in (a, b):
        oid = hass._object_id(dev, part)
        assert re.fullmatch(r"[A-Za-z0-9_-]+", oid)
        assert tuple(oid.rsplit("__", 1)) == (dev, part)     # the pair comes back
    if a != b:
        assert hass._object_id(*a) != hass._object_id(*b)


@given(st.text(min_size=1), st.text(min_size=1))
def test_fault_parts_are_injective(c1, c2):
    if c1 != c2:
        assert hass._fault_part(c1) != hass._fault_part(c2)


@given(st.text())
def test_any_text_survives_as_a_jinja_literal(text):
    # fault codes and manual text go into templates as literals: quotes,
    # backslashes, braces, CJK and astral characters must come back unchanged
    env = ImmutableSandboxedEnvironment()
    assert env.from_string("{{ x | tojson }}").render(x=text) == \
        env.from_string("{{ " + hass._lit(text) + " | tojson }}").render()
    obj = {"a": [text, True, None, 1.5], "b": False}
    assert json.loads(env.from_string("{{ " + hass._lit(obj) + " | tojson }}").render()) == obj


def test_codes_a_topic_cannot_carry_are_encoded():
    assert hass._fault_part("ERR-1") == "fault-ERR-1"
    assert hass._fault_part("--F") == "fault---F"
    assert hass._fault_part("故障+关阀") == "fault_x" + "故障+关阀".encode().hex()
    assert hass._fault_part("A_B") == "fault_x" + b"A_B".hex()


@pytest.mark.parametrize("args, match", [
    ((BASE, "site 1", PREFIX, []), "gateway id"),
    ((BASE, GW, "home/+/x", []), "discovery prefix"),
    ((BASE, GW, "/ha", []), "discovery prefix"),
    ((BASE, GW, PREFIX, [("fm.01", MODELS["mhcg"], "b", 1)]), "device name"),
    ((BASE, GW, PREFIX, [("a", MODELS["mhcg"], "b", 1), ("a", MODELS["mhcg"], "b", 2)]), "twice"),
    ((BASE, GW, PREFIX, [("a", MODELS["mhcg"], "b", 1, {"area": "x"})]), "unknown metadata"),
    ((BASE, GW, PREFIX, [("a", MODELS["mhcg"], "b", 1, {"extra_values": ["Bad Key"]})]), "extra value"),
])
def test_names_the_config_would_refuse_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        hass.discovery(*args)


def test_metadata_manufacturer_and_area():
    msgs = hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc",
                                                     meta={"manufacturer": "ACME", "suggested_area": "Boiler"})])
    dev = msgs[6][1]["device"]
    assert dev["manufacturer"] == "ACME" and dev["suggested_area"] == "Boiler"
    plain = hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc")])
    assert "manufacturer" not in plain[6][1]["device"]


# --------------------------------------------------------------------------- removal

def test_removals_cover_exactly_what_left():
    before = hass.topics(hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc"),
                                                            _device("mc-01", "mhcg")]))
    now = hass.topics(hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc")]))
    gone = hass.removals(before, now)
    assert gone and all(p == b"" for _, p in gone)
    assert {t for t, _ in gone} == {t for t in before if "/mc-01__" in t}
    assert hass.removals(now, now) == []
    assert {t for t, _ in hass.removals(now, [])} == set(now)


def test_encode_is_deterministic_utf8():
    msgs = hass.discovery(BASE, GW, PREFIX, [_device("mc-01", "mhcg")])
    cfg = next(p for t, p in msgs if "fault_x" in t)
    raw = hass.encode(cfg)
    assert json.loads(raw) == cfg and "故障+关阀".encode() in raw
    assert hass.encode(json.loads(raw)) == raw


# --------------------------------------------------------------------------- through a real broker

class _Reader:
    """A paho-mqtt 2 client that records the retained picture the way HA's
    MQTT integration receives it: subscribed to the discovery prefix and the
    gateway's topics, an empty retained payload deleting the topic."""

    def __init__(self, port: int):
        self.retained: dict[str, str] = {}
        self.lock = threading.Lock()
        self.marks: set[str] = set()
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"ha-standin-{id(self)}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda c, u, mid, rc, p: self.subscribed.set()
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(
            [(f"{PREFIX}/#", 1), (f"{BASE}/#", 1), ("test/mark", 1)])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10), "no SUBACK"

    def _on_message(self, client, userdata, msg):
        with self.lock:
            if msg.topic == "test/mark":
                self.marks.add(msg.payload.decode())
            elif msg.payload:
                self.retained[msg.topic] = msg.payload.decode("utf-8")
            else:
                self.retained.pop(msg.topic, None)

    def sync(self, tag: str) -> dict[str, str]:
        """Everything queued for this client before the mark has arrived once the mark has."""
        self.client.publish("test/mark", tag, qos=1)
        wait_until(lambda: tag in self.marks, 10, f"mark {tag}")
        with self.lock:
            return dict(self.retained)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def _publisher(port: int):
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="edgegw-standin")
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _publish(client, messages) -> None:
    infos = [client.publish(t, p, qos=1, retain=True) for t, p in messages]
    for info in infos:
        info.wait_for_publish(10)
        assert info.is_published()


@pytest.mark.integration
def test_through_mosquitto_as_home_assistant_sees_it(tmp_path):
    broker = Broker(tmp_path).start()
    pub = _publisher(broker.port)
    reader = None
    try:
        # First run: three devices configured, one of them (old-01) since removed.
        first = [_device("fm-01", "turbine-evc", unit=3), _device("mc-01", "mhcg", unit=5),
                 _device("fm-02", "turbine-evc", unit=4), _device("old-01", "mhcg", unit=9)]
        old = hass.discovery(BASE, GW, PREFIX, first, sw_version="0.1.0")
        _publish(pub, [(t, hass.encode(p)) for t, p in old])

        # Second run: old-01 left the config.
        now = hass.discovery(BASE, GW, PREFIX, first[:3], sw_version="0.1.0")
        gone = hass.removals(hass.topics(old), hass.topics(now))
        assert gone and all("/old-01__" in t for t, _ in gone)
        _publish(pub, [(t, hass.encode(p)) for t, p in now] + gone)

        states = {
            "fm-01": _state("fm-01", "turbine-evc", available=True, values=TURBINE_VALUES, unit=3,
                            active={"TEMP-SENSOR": {"since": SINCE}, "SLEEP": {"since": SINCE}}),
            "mc-01": _state("mc-01", "mhcg", available=True, values=MHCG_VALUES, unit=5,
                            active={"故障+关阀": {"since": SINCE}, "t": {"since": SINCE},
                                    "ERR-3": {"since": SINCE, "flapping": True}}),
            # stopped answering: values kept (one never read), NO-RESPONSE raised
            "fm-02": _state("fm-02", "turbine-evc", available=False, unit=4,
                            values={k: v for k, v in TURBINE_VALUES.items() if k != "serial_number"},
                            active={"NO-RESPONSE": {"since": SINCE}}),
        }
        _publish(pub, [(f"{BASE}/{n}/state", payloads.dumps(b)) for n, b in states.items()]
                 + [(f"{BASE}/status", payloads.dumps(STATUS))])

        reader = _Reader(broker.port)
        retained = reader.sync("first")
        configs = {t: json.loads(p) for t, p in retained.items() if t.startswith(PREFIX + "/")}
        assert sorted(configs) == sorted(hass.topics(now))          # old-01 is gone from the broker
        assert configs == dict(now)                                 # byte-faithful round trip
        ha = HaView(configs, retained)

        def sensor(dev, key):
            return ha.state(f"{PREFIX}/sensor/{GW}/{dev}__{key}/config")

        def fault(dev, code):
            return ha.state(f"{PREFIX}/binary_sensor/{GW}/{dev}__{hass._fault_part(code)}/config")

        # every value of an online device, as the number (or text) the state carries
        for dev, model_id, values in (("fm-01", "turbine-evc", TURBINE_VALUES), ("mc-01", "mhcg", MHCG_VALUES)):
            for f in MODELS[model_id].fields:
                if not f.publish:
                    continue
                available, value, _ = sensor(dev, f.name)
                cfg = configs[f"{PREFIX}/sensor/{GW}/{dev}__{f.name}/config"]
                want = float(values[f.name]) if numeric(cfg) else str(values[f.name])
                assert available, (dev, f.name)
                assert value == want, (dev, f.name, value)
        assert sensor("fm-01", "serial_number")[1] == "EVC0001"
        assert sensor("mc-01", "balance_m3")[1] == -3.2
        assert sensor("mc-01", "valve_state")[1] == "1"       # a code: text, no statistics

        # faults: ON exactly for the active ones, whatever characters the code has
        for dev, model_id, on in (("fm-01", "turbine-evc", {"TEMP-SENSOR"}),
                                  ("mc-01", "mhcg", {"故障+关阀", "t", "ERR-3"}),
                                  ("fm-02", "turbine-evc", {"NO-RESPONSE"})):
            for f in MODELS[model_id].faults:
                if f.kind != "fault":
                    continue
                available, value, attrs = fault(dev, f.code)
                assert available and value is (f.code in on), (dev, f.code, value)
                assert attrs["code"] == f.code and attrs["meaning_zh"] == f.zh.meaning
                assert attrs["remedy_en"] == list(f.en.remedy)
                assert attrs["active_since"] == (SINCE if f.code in on else None)
        assert fault("mc-01", "ERR-3")[2]["flapping"] is True
        assert fault("mc-01", "ERR-4")[2]["flapping"] is False
        # SLEEP is a state, not a fault: no problem sensor for it
        assert not [t for t in configs if "SLEEP" in t]

        # the unavailable device: its values unavailable, its faults and link still shown
        assert sensor("fm-02", "flow_m3h")[0] is False
        assert fault("fm-02", "NO-RESPONSE")[:2] == (True, True)
        available, link, attrs = sensor("fm-02", "link-state")
        assert (available, link) == (True, "unavailable")
        assert attrs["bus"] == "rs485-1" and attrs["unit"] == 4 and attrs["last_error"] == "timeout"
        assert sensor("fm-01", "link-state")[1] == "online"

        # the gateway
        gw = f"{PREFIX}/sensor/{GW}"
        assert ha.state(f"{PREFIX}/binary_sensor/{GW}/gateway_online/config")[:2] == (True, True)
        assert ha.state(f"{gw}/gateway_backlog_msgs/config")[:2] == (True, 7.0)
        assert ha.state(f"{gw}/gateway_oldest_age_s/config")[:2] == (True, None)   # null: unknown
        assert ha.state(f"{gw}/gateway_devices_with_faults/config")[:2] == (True, 3.0)
        assert ha.state(f"{gw}/gateway_store_health/config")[:2] == (True, "ok")
        gateway_ids = {i for t, c in configs.items() if "__" not in t for i in c["device"]["identifiers"]}
        assert gateway_ids == {f"edgegw.{GW}"}
        assert {c["device"]["via_device"] for t, c in configs.items() if "__" in t} == gateway_ids

        # fm-02 answers again: its values come back
        states["fm-02"] = _state("fm-02", "turbine-evc", available=True, values=TURBINE_VALUES, unit=4,
                                 active={})
        _publish(pub, [(f"{BASE}/fm-02/state", payloads.dumps(states["fm-02"]))])
        ha.retained = reader.sync("back")
        assert sensor("fm-02", "flow_m3h")[:2] == (True, 40.702)
        assert fault("fm-02", "NO-RESPONSE")[:2] == (True, False)

        # the Last Will: everything unavailable but the connectivity sensor, which says off
        _publish(pub, [(f"{BASE}/status", json.dumps(WILL).encode())])
        ha.retained = reader.sync("will")
        for topic, cfg in configs.items():
            available, value, _ = ha.state(topic)
            if topic.endswith("/gateway_online/config"):
                assert (available, value) == (True, False)
            else:
                assert available is False, topic
    finally:
        if reader:
            reader.close()
        pub.loop_stop()
        pub.disconnect()
        broker.stop()


def test_the_store_sensor_knows_every_health_the_status_reports(tmp_path):
    """An enum sensor given a value outside its options is an error in Home
    Assistant: a store running in RAM (state folder unwritable) says
    "ram_only", and a full disk "disk_full"."""
    options = next(c for t, c in hass.discovery(BASE, GW, PREFIX, [_device("fm-01", "turbine-evc")])
                   if t.endswith("/gateway_store_health/config"))["options"]
    ob = Outbox.in_ram("the state folder is read-only")
    try:
        assert ob.stats()["health"] in options
    finally:
        ob.close()
    assert {"ok", "disk_full", "read_only", "io_error", "corrupt"} <= set(options)
