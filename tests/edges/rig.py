"""A small site for the edge tests: Mosquitto with a log (and, when asked,
a password file), the simulator on a pseudo-terminal, `edgegw run`, and an
MQTT probe that logs in like an operator. Every wait is bounded."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import free_port, gateway_config, mosquitto_exe, start_gateway, start_sim, stop_proc, wait_until

SCENARIO = """
[simulator]
seed = 5
tick_s = 0.2

[[bus]]
name = "rs485-1"
kind = "pty"
link = "ttyE"

[[device]]
bus = "rs485-1"
unit = 1
model = "turbine-evc"
name = "fm-01"
pin = { flow_m3h = 12.5, temperature_C = 21.5, pressure_kPa = 350.0, battery_V = 3.55 }
"""
DEVICES = [{"name": "fm-01", "bus": "rs485-1", "unit": 1, "model": "turbine-evc"}]


class Site:
    def __init__(self, workdir: Path, *, user: str | None = None, password: str | None = None,
                 poll_s: float = 0.5) -> None:
        self.dir = workdir
        self.user, self.password = user, password
        self.port = free_port()
        self.broker_log = workdir / "mosquitto.log"
        conf = [f"listener {self.port} 127.0.0.1", "persistence false", "log_dest stderr",
                "connection_messages true"]
        if user is not None:
            pw = workdir / "mosquitto.passwd"
            subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), user, password], check=True,
                           capture_output=True)
            # Started as root, mosquitto would read it as user mosquitto,
            # who cannot enter pytest's private tmp folder.
            conf += ["allow_anonymous false", f"password_file {pw}"] + (["user root"] if os.geteuid() == 0 else [])
        else:
            conf.append("allow_anonymous true")
        (workdir / "mosquitto.conf").write_text("\n".join(conf) + "\n")
        self.broker = subprocess.Popen([mosquitto_exe(), "-c", str(workdir / "mosquitto.conf")],
                                       stdout=subprocess.DEVNULL, stderr=open(self.broker_log, "w"))
        wait_until(lambda: "running" in self.broker_log.read_text(), 10,
                   f"mosquitto to start ({self.broker_log})")
        self.sim, where = start_sim(workdir, SCENARIO)
        self.config = gateway_config(workdir, self.port, where["buses"], DEVICES, poll_s=poll_s)
        if user is not None:
            cred = workdir / "mqtt.credentials"
            cred.write_text(f"{user}\n{password}\n")
            cred.chmod(0o600)
            self.config.write_text(self.config.read_text().replace(
                "[mqtt]\n", '[mqtt]\ncredentials_file = "mqtt.credentials"\n', 1))
        self.state_dir = workdir / "state"
        self.gw = start_gateway(self.config)
        self.gw_log = workdir / "gateway.log"

    def connections_as(self, client_id: str) -> int:
        return sum(1 for ln in self.broker_log.read_text().splitlines() if f" as {client_id} " in ln)

    def close(self) -> None:
        for p in (self.gw, self.sim, self.broker):
            stop_proc(p)


class Probe:
    """An operator's MQTT client: publishes commands, records replies."""

    def __init__(self, site: Site, topic: str) -> None:
        self.msgs: list[tuple[float, str, bytes]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{os.getpid()}-{id(self)}")
        if site.user is not None:
            self.client.username_pw_set(site.user, site.password)

        def on_message(_c, _u, msg):
            with self.lock:
                self.msgs.append((time.monotonic(), msg.topic, bytes(msg.payload)))
        self.client.on_message = on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", site.port)
        self.client.loop_start()
        assert subscribed.wait(5), "MQTT subscription did not complete"

    def ask(self, topic: str, body: dict, timeout: float = 20) -> tuple[bytes, dict]:
        """Publish a command with an id; the raw reply and its JSON."""
        self.client.publish(topic, json.dumps(body), qos=1).wait_for_publish(5)

        def reply():
            with self.lock:
                for _t, tp, raw in self.msgs:
                    if tp == topic + "/reply" and json.loads(raw).get("id") == body["id"]:
                        return raw
            return None
        raw = wait_until(reply, timeout, f"the reply to {topic} {body['id']}")
        return raw, json.loads(raw)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
