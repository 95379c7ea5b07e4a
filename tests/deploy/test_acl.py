"""The shipped broker ACL (deploy/edgegw.acl) on a real Mosquitto with a
password file, on 127.0.0.1.

MQTT 3.1.1 cannot refuse a publish: Mosquitto acknowledges it and drops it.
So "cannot publish" is checked the way it matters, by a subscriber allowed
to read everything that sees nothing, after a later marker message from the
same client has arrived (the broker keeps one client's messages in order)."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.deploy.brokers import AuthBroker, Client
from tests.deploy.unitfile import ROOT
from tests.support import (
    gateway_config,
    start_gateway,
    start_sim,
    stop_proc,
    wait_until,
)

pytestmark = pytest.mark.integration

ACL = (ROOT / "deploy" / "edgegw.acl").read_text()
USERS = {"t1": "gw-one-pw", "t2": "gw-two-pw", "central": "op-pw"}


@pytest.fixture
def broker(tmp_path):
    b = AuthBroker(tmp_path, USERS, ACL)
    yield b
    b.stop()


@pytest.fixture
def clients(broker):
    made: list[Client] = []

    def login(user: str) -> Client:
        c = Client(broker.port, user, USERS[user], f"{user}-{len(made)}").wait_connected()
        made.append(c)
        return c

    yield login
    for c in made:
        c.close()


def delivered(publisher: Client, observer: Client, topic: str, payload: bytes, *, retain: bool = False,
              marker_topic: str) -> bool:
    """Publish, then a marker the publisher may certainly send; once the
    marker is seen, say whether the first message was."""
    marker = uuid.uuid4().hex.encode()
    publisher.publish(topic, payload, retain=retain)
    publisher.publish(marker_topic, marker)
    wait_until(lambda: marker in observer.seen(marker_topic), 10, f"marker on {marker_topic}")
    return payload in observer.seen(topic)


def test_a_gateway_publishes_what_it_produces(clients):
    central = clients("central")
    assert central.subscribe("edgegw/#") == [1]
    gw = clients("t1")
    mark = "edgegw/t1/fm-01/telemetry"
    for topic in ("edgegw/t1/status", "edgegw/t1/event", "edgegw/t1/fm-01/state",
                  "edgegw/t1/fm-01/telemetry", "edgegw/t1/fm-01/event",
                  "edgegw/t1/cmd/repoll/reply", "edgegw/t1/cmd/diag/reply"):
        assert delivered(gw, central, topic, f"from t1 to {topic}".encode(), marker_topic=mark), topic


def test_a_gateway_cannot_command_itself_nor_set_its_card_registry(clients, broker):
    central = clients("central")
    central.subscribe("edgegw/#")
    gw = clients("t1")
    # The gateway's own subscriptions: it must not be able to feed them.
    assert gw.subscribe("edgegw/t1/cmd/+") == [1]
    assert gw.subscribe("edgegw/t1/config/cards") == [1]
    mark = "edgegw/t1/fm-01/telemetry"
    for topic, retain in (("edgegw/t1/cmd/repoll", False), ("edgegw/t1/cmd/diag", False),
                          ("edgegw/t1/config/cards", True), ("edgegw/t1/config/other", True),
                          ("edgegw/t1/cmd/repoll/reply/x", False), ("edgegw/t1/anything", False)):
        payload = f"forged by t1 on {topic}".encode()
        assert not delivered(gw, central, topic, payload, retain=retain, marker_topic=mark), topic
        assert payload not in gw.seen(topic)
    # The broker says why (its log), and kept no retained registry.
    assert "Denied PUBLISH from" in broker.log.read_text()
    late = clients("central")
    late.subscribe("edgegw/t1/config/cards")
    time.sleep(0.5)
    assert late.seen("edgegw/t1/config/cards") == []


def test_a_gateway_stays_out_of_other_gateways_subtrees(clients):
    central = clients("central")
    central.subscribe("edgegw/#")
    t1, t2 = clients("t1"), clients("t2")
    assert not delivered(t1, central, "edgegw/t2/fm-01/telemetry", b"t1 posing as t2",
                         marker_topic="edgegw/t1/fm-01/telemetry")
    # t2 cannot listen to t1's commands.
    t2.subscribe("edgegw/t1/cmd/+")
    t2.subscribe("edgegw/#")
    gw1 = clients("t1")
    gw1.subscribe("edgegw/t1/cmd/+")
    central.publish("edgegw/t1/cmd/repoll", b'{"id": "c-1"}')
    wait_until(lambda: gw1.seen("edgegw/t1/cmd/repoll"), 10, "t1 gets its command")
    time.sleep(0.3)
    assert t2.seen("edgegw/t1/cmd/repoll") == []


def test_operators_send_commands_and_registries_but_cannot_forge_gateway_output(clients):
    gw = clients("t1")
    gw.subscribe("edgegw/t1/cmd/+")
    gw.subscribe("edgegw/t1/config/cards")
    central = clients("central")
    central.subscribe("edgegw/#")
    central.publish("edgegw/t1/cmd/repoll", b'{"id": "c-2", "device": "fm-01"}')
    central.publish("edgegw/t1/config/cards", b"card,valid_until\n", retain=True)
    wait_until(lambda: gw.seen("edgegw/t1/cmd/repoll") and gw.seen("edgegw/t1/config/cards"), 10,
               "command and registry reach the gateway")
    mark = "edgegw/t1/cmd/diag"
    for topic in ("edgegw/t1/cmd/diag/reply", "edgegw/t1/fm-01/telemetry", "edgegw/t1/status"):
        assert not delivered(central, central, topic, f"central forging {topic}".encode(),
                             marker_topic=mark), topic


SCENARIO = """
[simulator]
tick_s = 0.1
[[bus]]
name = "rs485-1"
kind = "pty"
link = "ttyACL"
[[device]]
bus = "rs485-1"
unit = 1
model = "turbine-evc"
name = "fm-01"
pin = { flow_m3h = 20.0, temperature_C = 15.0, pressure_kPa = 300.0, battery_V = 3.6 }
"""


def test_the_real_gateway_works_under_the_acl(tmp_path, broker, clients):
    """`edgegw run` logged in as t1: its status (and Last Will), telemetry and
    command replies pass; an operator's command reaches it."""
    central = clients("central")
    central.subscribe("edgegw/#")
    cred = tmp_path / "mqtt.credentials"
    cred.write_text(f"t1\n{USERS['t1']}\n")
    cred.chmod(0o600)
    sim, where = start_sim(tmp_path, SCENARIO)
    cfg = gateway_config(tmp_path, broker.port, where["buses"],
                         [{"name": "fm-01", "bus": "rs485-1", "unit": 1, "model": "turbine-evc"}])
    cfg.write_text(cfg.read_text().replace("keepalive = 5", f'keepalive = 5\ncredentials_file = "{cred}"'))
    gw = start_gateway(cfg)
    try:
        wait_until(lambda: central.seen("edgegw/t1/fm-01/telemetry") and central.seen("edgegw/t1/status"),
                   30, "telemetry and status through the ACL")
        central.publish("edgegw/t1/cmd/repoll", json.dumps({"id": "c-9", "device": "fm-01"}).encode())
        reply = wait_until(lambda: central.seen("edgegw/t1/cmd/repoll/reply"), 15, "command reply")
        assert json.loads(reply[-1])["id"] == "c-9"
        assert json.loads(reply[-1])["ok"] is True
        assert stop_proc(gw) == 0
        gw = None
        wait_until(lambda: any(json.loads(p).get("online") is False
                               for p in central.seen("edgegw/t1/status")), 10, "offline status")
    finally:
        stop_proc(gw)
        stop_proc(sim)


def test_the_shipped_broker_config_serves_a_gateway_over_tls(tmp_path):
    """deploy/mosquitto-edgegw.conf as shipped, its paths pointed at test
    files: TLS with a password per gateway and the shipped ACL."""
    import subprocess

    from tests.deploy.brokers import AS_ME, make_pki, password_file
    from tests.support import _can_connect, free_port, mosquitto_exe

    pki = make_pki(tmp_path / "pki")
    password_file(tmp_path / "passwd", USERS)
    (tmp_path / "edgegw.acl").write_text(ACL)
    port = free_port()
    conf = (ROOT / "deploy" / "mosquitto-edgegw.conf").read_text()
    for old, new in (("listener 8883\n", f"listener {port} 127.0.0.1\n"),
                     ("/etc/mosquitto/ca/ca.crt", str(pki / "ca.crt")),
                     ("/etc/mosquitto/certs/broker.crt", str(pki / "server.crt")),
                     ("/etc/mosquitto/certs/broker.key", str(pki / "server.key")),
                     ("/etc/mosquitto/edgegw.passwd", str(tmp_path / "passwd")),
                     ("/etc/mosquitto/edgegw.acl", str(tmp_path / "edgegw.acl")),
                     ("/var/lib/mosquitto/", f"{tmp_path}/")):
        assert old in conf, old
        conf = conf.replace(old, new)
    (tmp_path / "mosquitto.conf").write_text(conf + AS_ME)
    broker = subprocess.Popen([mosquitto_exe(), "-c", str(tmp_path / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "mosquitto.log", "w"))
    sim = gw = central = None
    try:
        wait_until(lambda: _can_connect(port), 10, "broker listening")
        central = Client(port, "central", USERS["central"], "central-tls", ca_file=pki / "ca.crt")
        central.wait_connected()
        central.subscribe("edgegw/#")
        # No TLS, or no password: no entry.
        plain = Client(port, "central", USERS["central"], "plain")
        wrong = Client(port, "central", "not-the-password", "wrong", ca_file=pki / "ca.crt")
        time.sleep(1)
        assert not plain.connected.is_set() and not wrong.connected.is_set()
        plain.close()
        wrong.close()

        cred = tmp_path / "mqtt.credentials"
        cred.write_text(f"t1\n{USERS['t1']}\n")
        cred.chmod(0o600)
        sim, where = start_sim(tmp_path, SCENARIO)
        cfg = gateway_config(tmp_path, port, where["buses"],
                             [{"name": "fm-01", "bus": "rs485-1", "unit": 1, "model": "turbine-evc"}])
        cfg.write_text(cfg.read_text().replace("keepalive = 5", f'keepalive = 5\ncredentials_file = "{cred}"')
                       + f'\n[mqtt.tls]\nca_file = "{pki / "ca.crt"}"\n')
        gw = start_gateway(cfg)
        wait_until(lambda: central.seen("edgegw/t1/fm-01/telemetry"), 30, "telemetry over TLS")
    finally:
        if central is not None:
            central.close()
        stop_proc(gw)
        stop_proc(sim)
        stop_proc(broker)
