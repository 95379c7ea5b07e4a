"""TLS with client certificates and a broker login, from the site config;
and a corrupt store at boot: moved aside, alarm published, fresh start."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.deploy.brokers import make_pki as shared_make_pki
from tests.support import (Broker, Subscriber, free_port, gateway_config, mosquitto_exe, start_gateway,
                           start_sim, stop_proc, wait_until)

pytestmark = pytest.mark.integration

SCENARIO = """
[simulator]
tick_s = 0.1
[[bus]]
name = "rs485-1"
kind = "pty"
link = "ttyT"
[[device]]
bus = "rs485-1"
unit = 1
model = "turbine-evc"
name = "fm-01"
pin = { flow_m3h = 20.0, temperature_C = 15.0, pressure_kPa = 300.0, battery_V = 3.6 }
"""
# Run as root, mosquitto would drop to its own user and could not read the
# test's private temp folder.
AS_ME = "user root\n" if os.geteuid() == 0 else ""
DEVICES = [{"name": "fm-01", "bus": "rs485-1", "unit": 1, "model": "turbine-evc"}]


def make_pki(d):
    shared_make_pki(d)
    for f in d.glob("*.key"):
        os.chmod(f, 0o644)  # mosquitto drops privileges; test-only keys
    os.chmod(d / "client.key", 0o600)   # the gateway's own key: its owner's alone (config check)


def test_tls_client_certificate_and_password(tmp_path):
    pki = tmp_path / "pki"
    pki.mkdir()
    make_pki(pki)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "pw"), "gw-t1", "s3cret"], check=True,
                   capture_output=True)
    os.chmod(tmp_path / "pw", 0o644)
    port = free_port()
    conf = tmp_path / "tls.conf"
    conf.write_text(f"listener {port} 127.0.0.1\ncafile {pki}/ca.crt\ncertfile {pki}/server.crt\n"
                    f"keyfile {pki}/server.key\nrequire_certificate true\n"
                    f"password_file {tmp_path}/pw\nallow_anonymous false\npersistence false\n" + AS_ME)
    broker = subprocess.Popen([mosquitto_exe(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=open(tmp_path / "mosq.log", "w"))
    sim = gw = None
    got: list[dict] = []
    sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="tls-sub")
    try:
        import socket
        wait_until(lambda: _open(port), 10, "TLS broker")
        cred = tmp_path / "mqtt.credentials"
        cred.write_text("gw-t1\ns3cret\n")
        os.chmod(cred, 0o600)
        sim, where = start_sim(tmp_path, SCENARIO)
        extra = (f'\n[mqtt.tls]\nca_file = "{pki}/ca.crt"\ncert_file = "{pki}/client.crt"\n'
                 f'key_file = "{pki}/client.key"\n')
        cfg = gateway_config(tmp_path, port, where["buses"], DEVICES)
        text = cfg.read_text().replace('keepalive = 5', f'keepalive = 5\ncredentials_file = "{cred}"')
        cfg.write_text(text + extra)
        gw = start_gateway(cfg)

        sub.tls_set(ca_certs=str(pki / "ca.crt"), certfile=str(pki / "client.crt"),
                    keyfile=str(pki / "client.key"), cert_reqs=ssl.CERT_REQUIRED)
        sub.username_pw_set("gw-t1", "s3cret")
        sub.on_message = lambda c, u, m: got.append(json.loads(m.payload))
        sub.on_connect = lambda c, u, f, rc, p: c.subscribe("edgegw/#", qos=1)
        sub.connect("127.0.0.1", port)
        sub.loop_start()
        wait_until(lambda: any("values" in b for b in got), 30, "telemetry over TLS")
        assert any(b.get("online") is True for b in got)
        log = (tmp_path / "gateway.log").read_text()
        assert "s3cret" not in log
    finally:
        sub.loop_stop()
        stop_proc(gw)
        stop_proc(sim)
        stop_proc(broker)


def test_wrong_password_is_reported_and_retried_not_fatal(tmp_path):
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "pw"), "gw-t1", "right"], check=True,
                   capture_output=True)
    os.chmod(tmp_path / "pw", 0o644)
    port = free_port()
    conf = tmp_path / "auth.conf"
    conf.write_text(f"listener {port} 127.0.0.1\npassword_file {tmp_path}/pw\nallow_anonymous false\n" + AS_ME)
    broker = subprocess.Popen([mosquitto_exe(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    sim = gw = None
    try:
        wait_until(lambda: _open(port), 10, "broker")
        cred = tmp_path / "mqtt.credentials"
        cred.write_text("gw-t1\nwrong\n")
        os.chmod(cred, 0o600)
        sim, where = start_sim(tmp_path, SCENARIO)
        cfg = gateway_config(tmp_path, port, where["buses"], DEVICES)
        cfg.write_text(cfg.read_text().replace('keepalive = 5', f'keepalive = 5\ncredentials_file = "{cred}"'))
        gw = start_gateway(cfg)
        wait_until(lambda: "refused" in (tmp_path / "gateway.log").read_text(), 20, "refusal logged")
        time.sleep(2)
        assert gw.poll() is None, "the daemon must keep running and retrying"
    finally:
        stop_proc(gw)
        stop_proc(sim)
        stop_proc(broker)


def _open(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def test_corrupt_outbox_at_boot_is_moved_aside_and_alarmed(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    sim, where = start_sim(tmp_path, SCENARIO)
    cfg = gateway_config(tmp_path, broker.port, where["buses"], DEVICES)
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.db").write_bytes(b"SQLite format 3\x00" + os.urandom(3000))  # a torn, garbage file
    (state / "state.json").write_text('{"devices": {"1": {"key": "fm-01", "val')  # truncated mid-write
    gw = start_gateway(cfg)
    try:
        sub.wait_for(lambda s: any(b.get("code") == "store_quarantined" for b in s.select("/t1/event")), 20,
                     "store_quarantined alarm")
        sub.wait_for(lambda s: s.select("/telemetry", "fm-01"), 20, "a fresh store works")
        moved = sorted(p.name for p in state.iterdir() if ".corrupt-" in p.name)
        assert any(n.startswith("outbox.db.corrupt-") for n in moved), moved
        assert any(n.startswith("state.json.corrupt-") for n in moved), moved
        paths = {b["detail"]["path"] for b in sub.select("/t1/event") if b.get("code") == "store_quarantined"}
        assert len(paths) >= 2
    finally:
        stop_proc(gw)
        stop_proc(sim)
        sub.close()
        broker.stop()


def test_read_only_state_folder_at_boot_runs_from_ram_not_a_crash_loop(tmp_path):
    """An SD card that went read-only: the daemon must not exit (systemd would
    restart it forever); it polls, publishes, and says what is wrong."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "placeholder").write_text("x")
    r = subprocess.run(["mount", "--bind", str(state), str(state)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {r.stderr.decode().strip()}")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(state)], check=True)
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    sim, where = start_sim(tmp_path, SCENARIO)
    cfg = gateway_config(tmp_path, broker.port, where["buses"], DEVICES)
    gw = start_gateway(cfg)
    try:
        sub.wait_for(lambda s: any(b.get("code") == "store_unwritable" for b in s.select("/t1/event")), 20,
                     "store_unwritable alarm")
        sub.wait_for(lambda s: len(s.select("/telemetry", "fm-01")) >= 3, 20, "polling from RAM")
        st = [b for b in sub.select("/t1/status") if b.get("online")][-1]
        assert st["store"]["health"] == "ram_only" and "state" in st["store"]["detail"]
        assert gw.poll() is None
        assert stop_proc(gw) == 0
    finally:
        stop_proc(gw)
        stop_proc(sim)
        sub.close()
        broker.stop()
        subprocess.run(["umount", "-l", str(state)], capture_output=True)
