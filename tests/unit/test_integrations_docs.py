"""docs/integrations.md: every snippet parses and keeps to the MQTT contract.

The fenced blocks are extracted and parsed (TOML with tomllib, JSON with
json, YAML with PyYAML). The topics they name must be topics of the
contract's table in docs/mqtt.md, and the fields they read must be in the
payloads documented there. Beyond parsing: the Home Assistant templates are
rendered against the documented payloads, the discovery example must be
what gateway/deliver/hass.py publishes, the ACL lines run in a real
Mosquitto, and the Node-RED function runs in Node.js on a stream of seqs
with a hole, a late resend and a duplicate.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import tomllib
from pathlib import Path

import jinja2
import paho.mqtt.client as paho
import pytest
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment
from paho.mqtt.enums import CallbackAPIVersion

from gateway.deliver import hass
from protocols.models import load_models
from tests.support import Broker, _can_connect, mosquitto_exe, wait_until

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "integrations.md").read_text(encoding="utf-8")
CONTRACT = (ROOT / "docs" / "mqtt.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
MODELS = load_models()


def blocks(text: str, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def one(lang: str, pred) -> str:
    found = [b for b in blocks(DOC, lang) if pred(b)]
    assert len(found) == 1, f"expected one {lang} block, found {len(found)}"
    return found[0]


# --------------------------------------------------------------------------- the contract, from docs/mqtt.md

def _documented_payloads() -> dict[str, dict]:
    out = {}
    for body in blocks(CONTRACT, "json"):
        p = json.loads(body)
        kind = ("status" if "online" in p else "telemetry" if "quality" in p
                else "state" if "availability" in p else "event" if p.get("type") == "fault" else None)
        assert kind and kind not in out, f"unrecognised or repeated payload in mqtt.md: {sorted(p)}"
        out[kind] = p
    assert set(out) == {"status", "telemetry", "state", "event"}
    return out


PAYLOADS = _documented_payloads()
# docs/mqtt.md's topic table: `edgegw/G/status`, `edgegw/G/D/state`, ...
TEMPLATES = sorted({t for cell in re.findall(r"^\| `(edgegw/[^|]*?)` \|", CONTRACT, re.M)
                    for t in re.findall(r"`([^`]+)`", f"`{cell}`")})
NAME = r"[A-Za-z0-9_-]{1,64}"


def _contract_topics() -> list[list[str]]:
    """Each contract topic as levels; variable levels (G, D, <name>) as None."""
    out = []
    for t in TEMPLATES:
        if t.startswith("..."):
            continue
        levels = [None if lv in ("G", "D") or lv.startswith("<") else lv for lv in t.split("/")]
        out.append(levels)
        if t.endswith("/cmd/<name>"):
            out.append(levels + ["reply"])       # "`edgegw/G/cmd/<name>` and `.../reply`"
    return out


CONTRACT_TOPICS = _contract_topics()
# A device or a command named like a level of the contract would make topics
# ambiguous: such names are not taken as matching a variable level.
KEYWORDS = {lv for levels in CONTRACT_TOPICS for lv in levels[1:] if lv}


def matches(filt: str) -> list[str]:
    """The contract topics a topic or subscription filter can receive."""
    got = []
    for levels in CONTRACT_TOPICS:
        f = filt.split("/")
        ok = True
        for i, lv in enumerate(f):
            if lv == "#":
                break
            if i >= len(levels):
                ok = False
                break
            want = levels[i]
            if lv == "+":
                continue
            if want is None:
                ok = ok and re.fullmatch(NAME, lv) is not None and lv not in KEYWORDS
            else:
                ok = ok and lv == want
        else:
            ok = ok and len(f) == len(levels)
        if ok:
            got.append("/".join(x or "*" for x in levels))
    return got


def test_the_contract_table_is_read():
    assert {"/".join(x or "*" for x in lv) for lv in CONTRACT_TOPICS} == {
        "edgegw/*/status", "edgegw/*/event", "edgegw/*/*/state", "edgegw/*/*/telemetry",
        "edgegw/*/*/event", "edgegw/*/cmd/*", "edgegw/*/cmd/*/reply"}
    assert matches("edgegw/site-001/fm-01/state") == ["edgegw/*/*/state"]
    assert matches("edgegw/+/+/+/wrong") == []
    assert matches("edgegw/site-001/fm-01/status") == []
    assert matches("homeassistant/#") == []


def test_every_block_parses_and_every_language_is_known():
    parsers = {"toml": tomllib.loads, "json": json.loads, "yaml": yaml.safe_load,
               "javascript": lambda s: s, "text": lambda s: s}
    seen = []
    for kind, body in FENCE.findall(DOC):
        assert kind in parsers, f"unlabelled or unknown code block: {kind!r}"
        parsers[kind](body)
        seen.append(kind)
    assert seen.count("toml") == 2 and seen.count("json") == 2 and seen.count("yaml") == 1


# --------------------------------------------------------------------------- Home Assistant

def test_homeassistant_table_matches_the_snippet():
    cfg = tomllib.loads(one("toml", lambda b: "[homeassistant]" in b))
    assert set(cfg) == {"homeassistant"}
    section = cfg["homeassistant"]
    assert section == {"enabled": True, "discovery_prefix": "homeassistant"}
    assert hass.check_discovery_prefix(section["discovery_prefix"]) is None
    part = DOC.split("```toml\n[homeassistant]", 1)[1].split("### ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", part, re.M)
    assert documented == ["enabled", "discovery_prefix"]
    for bad in ("", "ha/+", "#", "/ha", "ha/", "a//b", "$SYS"):
        assert hass.check_discovery_prefix(bad), bad


def test_discovery_example_is_what_the_gateway_publishes():
    example = json.loads(one("json", lambda b: b.lstrip().startswith("{")))
    msgs = dict(hass.discovery("edgegw/site-001", "site-001", "homeassistant",
                               [("fm-01", MODELS["turbine-evc"], "rs485-1", 3)], sw_version="0.1.0"))
    assert msgs[example["topic"]] == example["payload"]
    assert matches(example["payload"]["state_topic"]) == ["edgegw/*/*/state"]


def test_topic_and_id_table_examples_are_real():
    msgs = dict(hass.discovery("edgegw/site-001", "site-001", "homeassistant",
                               [("fm-01", MODELS["turbine-evc"], "rs485-1", 3),
                                ("mc-01", MODELS["mhcg"], "rs485-1", 5)]))
    part = DOC.split("### Topics and ids", 1)[1].split("### ", 1)[0]
    topics = re.findall(r"`(homeassistant/[^`]+/config)`", part)
    assert len(topics) == 3 and all(t in msgs for t in topics)
    assert "mc-01__" + hass._fault_part("故障+关阀") in part
    ids = re.findall(r"`(edgegw\.site-001\.[^`]+)`", part)
    uids = {p["unique_id"] for p in msgs.values()} | {i for p in msgs.values() for i in p["device"]["identifiers"]}
    assert ids and all(i in uids for i in ids)


def _env():
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)


def _render(template: str, **variables) -> str:
    return _env().from_string(template).render(**variables).strip()


def _value_json(kind: str) -> dict:
    return {"value": json.dumps(PAYLOADS[kind]), "value_json": PAYLOADS[kind]}


def test_home_assistant_yaml_reads_the_documented_payloads():
    doc = yaml.safe_load(one("yaml", lambda b: "mqtt:" in b))
    entities = doc["mqtt"]["sensor"] + doc["mqtt"]["binary_sensor"]
    assert entities
    published = {f.name for m in MODELS.values() for f in m.fields if f.publish}
    for e in entities:
        assert matches(e["state_topic"]) == ["edgegw/*/*/state"]
        # every value key read is one the models publish
        for key in re.findall(r"\.get\('(\w+)'\)", e["value_template"]):
            assert key in published, key
        for a in e.get("availability", []):
            kind = {"edgegw/*/status": "status", "edgegw/*/*/state": "state"}[matches(a["topic"])[0]]
            assert _render(a["value_template"], **_value_json(kind)) == a["payload_available"]
    flow = doc["mqtt"]["sensor"][0]
    # the documented state carries flow_m3h: 128.5
    assert float(_render(flow["value_template"], **_value_json("state"))) == \
        PAYLOADS["state"]["values"]["flow_m3h"]
    fault = doc["mqtt"]["binary_sensor"][0]
    assert _render(fault["value_template"], **_value_json("state")) == "ON"      # TEMP-SENSOR is active
    quiet = dict(PAYLOADS["state"], faults=[])
    assert _render(fault["value_template"], value=json.dumps(quiet), value_json=quiet) == "OFF"

    auto = doc["automation"][0]
    topic = auto["triggers"][0]["topic"]
    assert matches(topic) == ["edgegw/*/*/event"]
    event = PAYLOADS["event"]
    trigger = {"topic": "edgegw/site-001/m-17/event", "payload": json.dumps(event), "payload_json": event}
    assert _render(auto["conditions"][0]["value_template"], trigger=trigger) == "True"
    cleared = dict(event, state="cleared")
    assert _render(auto["conditions"][0]["value_template"],
                   trigger=dict(trigger, payload_json=cleared)) == "False"
    data = auto["actions"][0]["data"]
    assert _render(data["title"], trigger=trigger) == "m-17: ERR-1 (critical)"
    assert _render(data["message"], trigger=trigger).startswith(event["meaning"]["en"])


@pytest.mark.integration
def test_acl_lines_let_each_gateway_write_only_its_own_configs(tmp_path):
    """deploy/edgegw.acl plus the documented lines, in a real Mosquitto:
    site-001 publishes its discovery, site-002 cannot overwrite it, and the
    homeassistant account reads both the configs and the gateway's state."""
    acl = tmp_path / "edgegw.acl"
    acl.write_text((ROOT / "deploy" / "edgegw.acl").read_text() + "\n"
                   + one("text", lambda b: "%u" in b))
    broker = Broker(tmp_path)
    conf = tmp_path / f"mosquitto-{broker.port}.conf"
    # Broker.start() writes its own conf: run the same with the ACL file added
    # As root, Mosquitto drops to its own user before reading the ACL file,
    # which then cannot enter pytest's private tmp folder: stay root here.
    stay = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(f"listener {broker.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    f"acl_file {acl}\n{stay}")
    broker.proc = subprocess.Popen([mosquitto_exe(), "-c", str(conf)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    clients = []
    try:
        wait_until(lambda: _can_connect(broker.port), 10, "broker listening")
        msgs = hass.discovery("edgegw/site-001", "site-001", "homeassistant",
                              [("fm-01", MODELS["turbine-evc"], "rs485-1", 3)])
        topic, payload = msgs[6]
        gw1, gw2 = _client(broker.port, "site-001"), _client(broker.port, "site-002")
        clients += [gw1, gw2]
        for c, body in ((gw1, hass.encode(payload)), (gw2, b'{"name": "hijacked"}')):
            info = c.publish(topic, body, qos=1, retain=True)
            info.wait_for_publish(10)     # Mosquitto acks a denied publish and drops it
        gw1.publish("edgegw/site-001/fm-01/state", b'{"availability": "online"}', qos=1,
                    retain=True).wait_for_publish(10)
        got: dict[str, bytes] = {}
        done = threading.Event()
        ha = _client(broker.port, "homeassistant", on_message=lambda c, u, m: got.__setitem__(m.topic, m.payload))
        clients.append(ha)
        ha.on_subscribe = lambda c, u, mid, rc, p: done.set()
        ha.subscribe([("homeassistant/#", 1), ("edgegw/#", 1)])
        assert done.wait(10)
        wait_until(lambda: len(got) >= 2, 10, "retained configs and state")
        assert json.loads(got[topic]) == payload                       # site-002's write was refused
        assert got["edgegw/site-001/fm-01/state"] == b'{"availability": "online"}'
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        broker.stop()


def _client(port: int, user: str, on_message=None):
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{user}")
    c.username_pw_set(user)
    if on_message:
        c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


# --------------------------------------------------------------------------- Node-RED

FLOW = json.loads(one("json", lambda b: b.lstrip().startswith("[")))
NODES = {n["id"]: n for n in FLOW}
# every topic whose payload carries seq (docs/mqtt.md: "per gateway")
SEQ_TOPICS = {"edgegw/*/status", "edgegw/*/event", "edgegw/*/*/state", "edgegw/*/*/telemetry",
              "edgegw/*/*/event", "edgegw/*/cmd/*/reply"}


def test_node_red_flow_is_wired_and_subscribes_to_the_contract():
    assert len(NODES) == len(FLOW)
    kinds = {"mqtt-broker", "mqtt in", "function", "switch", "debug"}
    assert {n["type"] for n in FLOW} <= kinds
    for n in FLOW:
        for out in n.get("wires", []):
            assert all(target in NODES for target in out), n["id"]
        if n["type"] in ("function", "switch"):
            assert len(n["wires"]) == n["outputs"]
    ins = [n for n in FLOW if n["type"] == "mqtt in"]
    covered = set()
    for n in ins:
        assert NODES[n["broker"]]["type"] == "mqtt-broker"
        assert n["qos"] == "1" and n["datatype"] == "json"
        got = matches(n["topic"])
        assert got, n["topic"]
        covered |= set(got)
    # seq is per gateway across all of these: listening to fewer reports false gaps
    assert covered == SEQ_TOPICS
    broker = next(n for n in FLOW if n["type"] == "mqtt-broker")
    assert broker["cleansession"] is False and broker["clientid"]        # persistent session


def test_node_red_switches_read_documented_event_fields():
    event = PAYLOADS["event"]
    switches = [n for n in FLOW if n["type"] == "switch"]
    assert switches
    for n in switches:
        assert n["propertyType"] == "msg" and n["property"].startswith("payload.")
        field = n["property"].removeprefix("payload.")
        assert field in event, field
        for rule in n["rules"]:
            # the values it tests are the documented ones
            assert f'"{field}": "{rule["v"]}"' in CONTRACT or f"`{rule['v']}`" in CONTRACT, rule


def test_node_red_function_block_is_the_flow_code():
    func = NODES["seq-check"]["func"]
    assert one("javascript", lambda b: True) == func
    assert set(re.findall(r"\bp\.(\w+)", func)) <= set(PAYLOADS["telemetry"]) & set(PAYLOADS["event"])


_RUNNER = r"""
const fs = require("fs");
const [func, steps] = JSON.parse(fs.readFileSync(0, "utf8"));
const store = {};
const context = {get: k => store[k], set: (k, v) => { store[k] = JSON.parse(JSON.stringify(v)); }};
const f = new Function("msg", "node", "context", func);
let now = 0;
Date.now = () => now;
const out = [];
for (const s of steps) {
  now = s.t;
  const r = f({topic: s.topic, payload: s.payload, retain: !!s.retain}, {}, context);
  out.push([r[0] === null ? null : r[0].payload.seq ?? "no-seq", r[1] === null ? null : r[1].payload]);
}
process.stdout.write(JSON.stringify(out));
"""


def test_node_red_function_finds_lost_and_duplicate_seqs():
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed (make test installs it)")

    def msg(seq, t, topic="edgegw/site-001/fm-01/telemetry", **kw):
        return {"topic": topic, "payload": {"v": 1, "seq": seq}, "t": t, **kw}

    steps = [
        {"topic": "edgegw/site-001/fm-01/state", "payload": {"seq": 3}, "t": 0, "retain": True},  # replay
        msg(10, 0), msg(11, 1000, "edgegw/site-001/status"), msg(13, 2000),     # 12 missing
        msg(16, 3000, "edgegw/site-001/fm-01/event"),                           # 14, 15 missing
        msg(12, 4000),                                                          # late resend closes 12
        msg(13, 5000),                                                          # duplicate
        msg(100, 6000, "edgegw/site-002/fm-01/telemetry"),                      # another gateway
        msg(17, 63500),                                                         # 14, 15 open > 60 s
        {"topic": "edgegw/site-001/status", "payload": {"seq": None, "online": False}, "t": 64000},
        msg(10**13, 65000),                                                     # quarantined store
    ]
    r = subprocess.run([node, "-e", _RUNNER], input=json.dumps([NODES["seq-check"]["func"], steps]),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # passed on (by seq; None: dropped; "no-seq": the Last Will, passed as it is)
    assert [o[0] for o in out] == [3, 10, 11, 13, 16, 12, None, 100, 17, "no-seq", 10**13]
    assert [o[1] for o in out] == [None] * 8 + [
        [{"type": "seq_gap", "gateway": "site-001", "missing": [14, 15]}],   # 12 was resent in time
        None,
        [{"type": "seq_jump", "gateway": "site-001", "from": 17, "to": 10**13}]]


# --------------------------------------------------------------------------- Telegraf

def test_telegraf_reads_the_documented_telemetry():
    cfg = tomllib.loads(one("toml", lambda b: "inputs.mqtt_consumer" in b))
    (consumer,) = cfg["inputs"]["mqtt_consumer"]
    assert consumer["qos"] == 1 and consumer["persistent_session"] is True and consumer["client_id"]
    assert consumer["data_format"] == "json_v2"
    for t in consumer["topics"]:
        assert matches(t) == ["edgegw/*/*/telemetry"]
    (tp,) = consumer["topic_parsing"]
    assert tp["topic"] in consumer["topics"]
    assert len(tp["tags"].split("/")) == len(tp["topic"].split("/"))
    tags = dict(zip(tp["tags"].split("/"), tp["topic"].split("/")))
    assert tags["gateway"] == "+" and tags["device"] == "+"
    # gateway is the level after the prefix, device the one after that
    assert tp["tags"].split("/").index("gateway") == 1 and tp["tags"].split("/").index("device") == 2

    (j,) = consumer["json_v2"]
    tele = PAYLOADS["telemetry"]
    assert j["timestamp_path"] in tele
    assert j["timestamp_format"] == "2006-01-02T15:04:05Z07:00"   # Go's RFC 3339 layout
    for t in j["tag"] + j["field"]:
        assert t["path"] in tele, t["path"]
    (obj,) = j["object"]
    assert isinstance(tele[obj["path"]], dict)
    for key in obj.get("excluded_keys", []):
        assert key in tele[obj["path"]], key
    # after exclusion every documented value is a number
    kept = {k: v for k, v in tele[obj["path"]].items() if k not in obj.get("excluded_keys", [])}
    assert kept and all(isinstance(v, (int, float)) for v in kept.values())


def test_documented_config_sizes_hold():
    part = DOC.split("### Size", 1)[1].split("### ", 1)[0]
    sizes = dict(re.findall(r"([a-z-]+) (\d+)\s+KB", part.replace("\n", " ")))
    assert set(sizes) >= set(MODELS), sorted(sizes)
    for model_id, kb in sizes.items():
        if model_id not in MODELS:
            continue
        msgs = hass.discovery("edgegw/site-001", "site-001", "homeassistant",
                              [("dev-01", MODELS[model_id], "rs485-1", 3)], sw_version="0.1.0")[6:]
        size = sum(len(t) + len(hass.encode(p)) for t, p in msgs)
        assert round(size / 1000) == int(kb), (model_id, size)
