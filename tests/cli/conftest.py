"""A whole site for the CLI tests: Mosquitto, the simulator and `edgegw run`
as real processes, on 127.0.0.1 and pseudo-terminals.

One rig per test module (module scope): starting it costs a few seconds, and
the tests only read from it, except the ones that stop the daemon to check
what the commands do without it (fixtures `live` and `down` bring the daemon
to the state a test needs, whatever ran before).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import wait_until

from gateway.field import demo
from gateway.field.cli import main
from gateway.field.client import ControlClient, DaemonDown, DaemonError

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
GOLDEN = HERE / "golden"
SCENARIO = HERE / "scenario.toml"
GW_ID = "site-t"
PREFIX = "edgegw"
# fm-03 (the faulty meter) says where it is; its own serial number beats the one written here
META = {"fm-03": '[device.meta]\naddress = "Boiler house, line 3"\ncontact = "Mr Li, ext. 8030"\n'
                 'serial = "PLATE-0003"\n'}


def wait_for(pred, timeout: float, step: float = 0.1, what: str = "condition"):
    return wait_until(pred, timeout, what, step)


class Rig:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.mqtt_port = demo.free_port()
        self.broker = demo.start_broker(workdir, self.mqtt_port)
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "simulators.cli", "--scenario", str(SCENARIO), "--dir", str(workdir), "--json"],
            stdout=subprocess.PIPE, stderr=open(workdir / "simulator.log", "w"), text=True, cwd=ROOT)
        line = self.sim.stdout.readline()
        assert line, (workdir / "simulator.log").read_text()
        self.where = json.loads(line)
        self.config = self.write_config()
        self.state_dir = workdir / "state"
        self.gw: subprocess.Popen | None = None
        self.gw_log = workdir / "gateway.log"

    def write_config(self) -> Path:
        b = self.where["buses"]
        text = f"""
[gateway]
id = "{GW_ID}"
site = "CLI test site"
state_dir = "state"
language = "en"

[mqtt]
host = "127.0.0.1"
port = {self.mqtt_port}
topic_prefix = "{PREFIX}"

# the site's own promise for major faults (default 24 h)
[service]
respond_within_h = {{ major = 8 }}

[[bus]]
name = "rs485-1"
port = "{b['rs485-1']}"
baudrate = 9600
parity = "N"
timeout_s = 0.2

[[bus]]
name = "rs485-2"
port = "{b['rs485-2']}"
baudrate = 9600
parity = "N"
timeout_s = 0.2
"""
        for name, unit in (("fm-01", 1), ("fm-02", 2), ("fm-03", 3)):
            text += f"""
[[device]]
name = "{name}"
bus = "rs485-1"
unit = {unit}
model = "turbine-evc"
poll_interval_s = 1
""" + META.get(name, "")
        path = self.dir / "edgegw.toml"
        path.write_text(text)
        return path

    # -- the daemon -------------------------------------------------------------

    def request(self, cmd: str, args: dict | None = None, timeout: float = 10.0):
        with ControlClient(self.state_dir / "control.sock", timeout=timeout) as c:
            return c.request(cmd, args)

    def running(self) -> bool:
        return self.gw is not None and self.gw.poll() is None

    def start(self) -> None:
        self.gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
                                   stderr=open(self.gw_log, "a"), cwd=ROOT)

        def ready():
            try:
                st = self.request("status", timeout=2.0)
            except (DaemonDown, DaemonError, OSError):
                return None
            devs = {d["name"]: d for d in st["devices"]}
            if not all(d["availability"] == "online" for d in devs.values()):
                return None
            if not st["broker"]["connected"]:
                return None
            # fm-03's sensor fault (set at t=0, debounce 2) is what the tests look at.
            return st if any(f["code"] == "TEMP-SENSOR" for f in devs["fm-03"]["faults"]) else None
        wait_for(ready, 20, what=f"the daemon to be ready (log: {self.gw_log})")

    def stop(self) -> None:
        if self.gw is not None and self.gw.poll() is None:
            self.gw.send_signal(signal.SIGTERM)
            try:
                self.gw.wait(10)
            except subprocess.TimeoutExpired:
                self.gw.kill()
                self.gw.wait(5)
        self.gw = None

    def close(self) -> None:
        self.stop()
        for p in (self.sim, self.broker):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    r = Rig(tmp_path_factory.mktemp("cli-site"))
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def live(rig):
    if not rig.running():
        rig.start()
    return rig


@pytest.fixture
def down(rig):
    if rig.running():
        rig.stop()
    elif not (rig.state_dir / "state.json").exists():
        # the stopped-daemon tests look at what a daemon recorded
        rig.start()
        rig.stop()
    return rig


# -- running the CLI --------------------------------------------------------------

@pytest.fixture
def cli(capsys):
    """edgegw in this process: (exit code, stdout, stderr)."""

    def run(*argv):
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err
    return run


def run_subprocess(*argv, timeout: float = 30.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "gateway", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


# -- MQTT ---------------------------------------------------------------------------

class MqttProbe:
    def __init__(self, port: int, topic: str) -> None:
        self.msgs: list[tuple[float, str, dict, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"cli-test-{os.getpid()}-{id(self)}")

        def on_message(c, u, msg):
            try:
                body = json.loads(msg.payload)
            except ValueError:
                body = {"raw": msg.payload}
            with self.lock:
                self.msgs.append((time.monotonic(), msg.topic, body, bool(msg.retain)))

        self.client.on_message = on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(5), "MQTT subscription did not complete"

    def publish(self, topic: str, payload) -> None:
        data = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(topic, data, qos=1).wait_for_publish(5)

    def matching(self, pred) -> list:
        with self.lock:
            return [m for m in self.msgs if pred(m)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def mqtt(rig):
    probes = []

    def make(topic: str) -> MqttProbe:
        p = MqttProbe(rig.mqtt_port, topic)
        probes.append(p)
        return p
    yield make
    for p in probes:
        p.close()


# -- golden files -------------------------------------------------------------------------

def check_golden(name: str, actual: str) -> None:
    """Compare with tests/cli/golden/<name>; UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 and review it"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, f"{name} differs from the golden file (UPDATE_GOLDEN=1 to accept)"


VOLATILE = {"ts", "since", "last_good_ts", "last_error_ts", "last_error", "started", "when", "elapsed_s",
            "eta_s", "response_ms", "uptime_s", "oldest_age_s", "backlog_bytes", "backlog_msgs", "inflight",
            "pid", "connects", "synced", "ts_synced", "seq", "response_ms_mean", "response_ms_p95", "requests", "ok",
            "timeouts", "crc_errors", "exceptions", "disconnects", "why", "respond_by"}
COUNTED = {"values", "dropped"}


def normalise(obj, rig_dir: str | None = None):
    """Volatile fields (times, ages, counters, paths of this run) become
    placeholders, so a golden --json file checks the shape and the stable
    content."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in VOLATILE or (k == "port" and isinstance(v, int)):
                out[k] = "<volatile>"
            elif k == "counters":
                out[k] = "<volatile>" if v is not None else None   # keys appear with the first error
            elif k in COUNTED and isinstance(v, dict):
                out[k] = {kk: "<n>" for kk in sorted(v)}
            else:
                out[k] = normalise(v, rig_dir)
        return out
    if isinstance(obj, list):
        return [normalise(v, rig_dir) for v in obj]
    if isinstance(obj, str) and rig_dir and rig_dir in obj:
        return obj.replace(rig_dir, "<dir>")
    return obj


def golden_json(name: str, obj, rig_dir: str | None = None) -> None:
    check_golden(name, json.dumps(normalise(obj, rig_dir), ensure_ascii=False, indent=2, sort_keys=True) + "\n")
