"""`edgegw demo`: the whole path on one machine, with no hardware.

Starts a local Mosquitto on 127.0.0.1, the simulators on pseudo-terminals,
and `edgegw run` against them, then shows the MQTT messages as they arrive.
Everything it starts is stopped on Ctrl-C (or after --seconds).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from .text import fmt_num


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(workdir: Path, port: int) -> subprocess.Popen:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        raise SystemExit("edgegw demo: Mosquitto is not installed (apt-get install mosquitto)")
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=open(workdir / "mosquitto.log", "w"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    raise SystemExit("edgegw demo: Mosquitto did not start; see " + str(workdir / "mosquitto.log"))


def start_simulator(workdir: Path, scenario: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-m", "simulators.cli", "--scenario", scenario,
                             "--dir", str(workdir), "--json"],
                            stdout=subprocess.PIPE, stderr=open(workdir / "simulator.log", "w"),
                            text=True)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit("edgegw demo: the simulator did not start; see " + str(workdir / "simulator.log"))
    return proc, json.loads(line)


def write_config(workdir: Path, port: int, sim: dict) -> Path:
    lines = ['[gateway]', 'id = "demo"', 'site = "edgegw demo site"', 'state_dir = "state"',
             'language = "en"', '', '[mqtt]', 'host = "127.0.0.1"', f'port = {port}', '']
    for name, where in sim["buses"].items():
        lines += ['[[bus]]', f'name = "{name}"', f'port = "{where}"']
        if not where.startswith("tcp://"):
            lines += ['baudrate = 9600', 'parity = "N"']
        lines += ['timeout_s = 0.3', '']
    bus_of = {}
    for name in sim["buses"]:
        bus_of.setdefault(name, name)
    for name, d in sim["devices"].items():
        lines += ['[[device]]', f'name = "{name}"', f'bus = "{d["bus"]}"', f'unit = {d["unit"]}',
                  f'model = "{d["model"]}"', 'poll_interval_s = 2', '']
    path = workdir / "edgegw.toml"
    path.write_text("\n".join(lines))
    return path


def live_view(port: int, stop: threading.Event) -> None:
    def on_message(client, userdata, msg):
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {}
        topic = msg.topic.split("/", 2)[-1]
        stamp = time.strftime("%H:%M:%S")
        if topic.endswith("/telemetry"):
            vals = "  ".join(f"{k}={_fmt(v)}" for k, v in body.get("values", {}).items())
            print(f"{stamp} {topic:<22} seq={body.get('seq')} {vals}", flush=True)
        elif topic.endswith("/event") and body.get("type") != "fault":
            what = body.get("event") or body.get("code") or body.get("type")
            extra = " ".join(f"{k}={fmt_num(body[k])}" for k in ("door", "card", "holder_type", "card_valid",
                                                                  "range") if k in body)
            print(f"{stamp} {topic:<22} seq={body.get('seq')} {what} {extra}", flush=True)
        elif topic.endswith("/event"):
            meaning = body.get("meaning", {}).get("en", "")
            print(f"{stamp} {topic:<22} seq={body.get('seq')} {body.get('code')} {body.get('state')}"
                  f" [{body.get('severity')}] {meaning}", flush=True)
        elif topic.endswith("/state"):
            faults = ",".join(f["code"] for f in body.get("faults", [])) or "-"
            states = ",".join(body.get("states", [])) or "-"
            print(f"{stamp} {topic:<22} {body.get('availability')} faults={faults} states={states}",
                  flush=True)
        elif msg.topic.endswith("/status"):
            topic = "status"
            print(f"{stamp} {'gateway/status':<22} online={fmt_num(body.get('online'))} backlog="
                  f"{fmt_num((body.get('backlog') or {}).get('backlog_msgs'))}", flush=True)

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="edgegw-demo-view")
    client.on_message = on_message
    client.on_connect = lambda c, u, f, rc, p: c.subscribe("edgegw/#", qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    stop.wait()
    client.loop_stop()
    client.disconnect()


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else fmt_num(v)


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(8)
    except subprocess.TimeoutExpired:
        proc.kill()


def main(args) -> int:
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="edgegw-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    broker = sim = gw = None
    stop = threading.Event()

    def on_term(signum, frame):
        raise KeyboardInterrupt  # clean up below, as for Ctrl-C

    signal.signal(signal.SIGTERM, on_term)
    try:
        broker = start_broker(workdir, port)
        sim, where = start_simulator(workdir, args.scenario or "demo")
        cfg = write_config(workdir, port, where)
        buses = ", ".join(f"{name}={port_}" for name, port_ in where["buses"].items())
        print(f"edgegw demo: broker 127.0.0.1:{port}, simulators {buses}, config {cfg}, logs in {workdir}",
              flush=True)
        viewer = threading.Thread(target=live_view, args=(port, stop), daemon=True)
        viewer.start()
        gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
                              stderr=open(workdir / "gateway.log", "w"))
        deadline = time.monotonic() + args.seconds if args.seconds else None
        while deadline is None or time.monotonic() < deadline:
            if gw.poll() is not None:
                print(f"edgegw demo: the gateway exited ({gw.returncode}); see {workdir / 'gateway.log'}")
                return 1
            time.sleep(0.2)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(gw)
        stop.set()
        _stop(sim)
        _stop(broker)
