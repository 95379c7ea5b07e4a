"""Real parts for integration tests: a Mosquitto broker on 127.0.0.1, the
simulator on pseudo-terminals, `edgegw run` as a process, and an MQTT
subscriber that records what arrives. Every wait is bounded."""
from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent


def ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


_given: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, for a server a test starts. Not from
    bind(0): that is the ephemeral range, from which the kernel also picks
    the local port of any connection made before the server binds (the
    test's own MQTT client), and the server then cannot listen. Never the
    same port twice in a run."""
    lo, hi = ephemeral_range()
    pool = range(20000, lo) if lo > 21000 else range(hi + 1, 65536)
    rng = random.Random()
    for _ in range(1000 if len(pool) > 1000 else 0):
        port = rng.choice(pool)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    with socket.socket() as s:       # an ephemeral range that leaves nothing outside it
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        raise RuntimeError("Mosquitto is not installed: run `make sysdeps` (apt-get install mosquitto)")
    return exe


class Broker:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 100000\n")
        self.proc = subprocess.Popen([mosquitto_exe(), "-c", str(conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _can_connect(self.port), 10, "broker listening")
        return self

    def stop(self) -> None:
        stop_proc(self.proc)
        self.proc = None


def _can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def wait_until(pred, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = pred()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stop_proc(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 10) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class Subscriber:
    """Records every message under a topic filter, with arrival time."""

    def __init__(self, port: int, topic: str = "edgegw/#") -> None:
        self.messages: list[tuple[float, str, dict, bool]] = []
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-sub-{os.getpid()}-{id(self)}")
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = {"_raw": msg.payload}
        with self.lock:
            self.messages.append((time.monotonic(), msg.topic, body, bool(msg.retain)))

    def select(self, suffix: str | None = None, device: str | None = None) -> list[dict]:
        with self.lock:
            out = []
            for _t, topic, body, _r in self.messages:
                if suffix and not topic.endswith(suffix):
                    continue
                if device and f"/{device}/" not in topic:
                    continue
                out.append(body)
            return out

    def timed(self, suffix: str, device: str | None = None) -> list[tuple[float, dict]]:
        with self.lock:
            return [(t, b) for t, topic, b, _r in self.messages
                    if topic.endswith(suffix) and (device is None or f"/{device}/" in topic)]

    def wait_for(self, pred, timeout: float, what: str):
        return wait_until(lambda: pred(self), timeout, what, 0.05)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def start_sim(workdir: Path, scenario: str | Path) -> tuple[subprocess.Popen, dict]:
    """Start the simulator on a scenario (a path, or TOML text) and return
    where its buses listen."""
    if isinstance(scenario, str) and "\n" in scenario:
        path = workdir / "scenario.toml"
        path.write_text(scenario)
    else:
        path = Path(scenario)
    log = open(workdir / "sim.log", "a")
    proc = subprocess.Popen([sys.executable, "-m", "simulators.cli", "--scenario", str(path),
                             "--dir", str(workdir), "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if not line:
        raise AssertionError("simulator did not start: " + (workdir / "sim.log").read_text()[-2000:])
    return proc, json.loads(line)


def gateway_config(workdir: Path, broker_port: int, buses: dict[str, str], devices: list[dict], *,
                   gateway_id: str = "t1", poll_s: float = 0.5, timeout_s: float = 0.2,
                   extra: str = "") -> Path:
    lines = ["[gateway]", f'id = "{gateway_id}"', 'state_dir = "state"', 'language = "en"', "",
             "[mqtt]", 'host = "127.0.0.1"', f"port = {broker_port}", "keepalive = 5", ""]
    for name, where in buses.items():
        lines += ["[[bus]]", f'name = "{name}"', f'port = "{where}"']
        if not where.startswith("tcp://"):
            lines += ["baudrate = 9600", 'parity = "N"']
        lines += [f"timeout_s = {timeout_s}", "retries = 0", "backoff_max_s = 2", ""]
    for d in devices:
        lines += ["[[device]]", f'name = "{d["name"]}"', f'bus = "{d["bus"]}"', f'unit = {d["unit"]}',
                  f'model = "{d["model"]}"', f'poll_interval_s = {d.get("poll_s", poll_s)}']
        if d.get("params"):
            lines.append("[device.params]")
            for k, v in d["params"].items():
                lines.append(f"{k} = {json.dumps(v)}")
        if d.get("report"):
            r = d["report"]
            lines += ["[device.report]", f'heartbeat_s = {r["heartbeat_s"]}',
                      "deadband = { " + ", ".join(f"{k} = {v}" for k, v in r.get("deadband", {}).items()) + " }"]
        lines.append("")
    lines.append(extra)
    path = workdir / "edgegw.toml"
    path.write_text("\n".join(lines))
    return path


def start_gateway(config: Path, log_name: str = "gateway.log", env: dict | None = None) -> subprocess.Popen:
    log = open(config.parent / log_name, "a")
    return subprocess.Popen([sys.executable, "-m", "gateway", "run", "--config", str(config)],
                            cwd=ROOT, stdout=log, stderr=log, env={**os.environ, **(env or {})})


class Uplink:
    """A TCP relay between the gateway and the broker on 127.0.0.1 that can
    be cut and restored: a cellular uplink going away. The broker and the
    subscriber stay up, so whatever the broker acknowledged is delivered, and
    only the gateway's own store-and-forward is under test."""

    def __init__(self, upstream_port: int, delay_s: float = 0.0) -> None:
        self.upstream = upstream_port
        self.delay_s = delay_s   # added to everything the broker sends: a slow link's round trip
        self.port = free_port()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.relayed = 0         # connections carried to the broker: the gateway's (re)connects
        self.up()

    def up(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(8)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            if ls is not self._listener:   # accepted just as the uplink went down
                client.close()
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks += [client, server]
                self.relayed += 1
            for a, b, delay in ((client, server, 0.0), (server, client, self.delay_s)):
                threading.Thread(target=self._pump, args=(a, b, delay), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, delay: float = 0.0) -> None:
        try:
            while data := src.recv(65536):
                if delay:
                    time.sleep(delay)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def down(self) -> None:
        if self._listener is not None:
            ls, self._listener = self._listener, None
            # close() alone does not wake a thread blocked in accept(), which
            # would then let one more connection through the "cut" uplink
            try:
                ls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ls.close()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


def rtu_frame(body: bytes) -> bytes:
    """An RTU frame: body plus its CRC, computed by pymodbus' own framer."""
    from pymodbus.framer.rtu import FramerRTU
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")


class RawLine:
    """The gateway's end of a pseudo-terminal, opened raw: a third-party
    master that writes request bytes and reads whatever comes back."""

    def __init__(self, path: str) -> None:
        import termios
        import tty
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd, termios.TCSANOW)

    def drain(self) -> bytes:
        out = b""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except BlockingIOError:
                return out
            if not chunk:
                return out
            out += chunk

    def ask(self, request: bytes, quiet_s: float = 0.15, timeout: float = 2.0) -> bytes:
        """Send one request; the reply is every byte until the line has been
        quiet for quiet_s after the first one (or nothing after timeout)."""
        import select
        self.drain()
        os.write(self.fd, request)
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            wait = quiet_s if got else deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(0.0, wait))
            if not ready:
                if got:
                    break
                continue
            got += self.drain()
        return got

    def close(self) -> None:
        os.close(self.fd)


def proc_rss_kb(pid: int) -> int | None:
    """VmRSS of a running process in kB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_fds(pid: int) -> int | None:
    """Open file descriptors of a running process (None once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def outbox_figures(state_dir: Path) -> dict:
    """What a stopped gateway's outbox holds, read from the file: the next seq
    (every smaller one was issued to a message), the messages still stored
    and the budget drops per class."""
    import sqlite3
    db = sqlite3.connect(f"file:{Path(state_dir) / 'outbox.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT seq_next, dropped_event, dropped_state, dropped_telemetry, coalesced "
                         "FROM counters").fetchone()
        backlog = db.execute("SELECT COUNT(*) FROM msg").fetchone()[0]
    finally:
        db.close()
    return {"seq_next": row[0], "dropped": {"event": row[1], "state": row[2], "telemetry": row[3]},
            "coalesced": row[4], "backlog": backlog}


def outbox_kv(state_dir: Path, key: str):
    """One key/value entry of a stopped gateway's outbox (a door cursor, an
    interpreter snapshot), as committed."""
    import sqlite3
    db = sqlite3.connect(f"file:{Path(state_dir) / 'outbox.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return None if row is None else json.loads(row[0])


def mqtt_link(broker: Broker, client_id: str, on_ack, on_up=lambda: None, on_down=lambda: None):
    """The gateway's MqttLink to a test broker (imported here, not at the
    top: most tests never touch the gateway's MQTT side)."""
    from gateway.deliver.mqtt import MqttLink
    from gateway.site.config.types import MqttCfg
    cfg = MqttCfg(host="127.0.0.1", port=broker.port, client_id=client_id, topic_prefix="t",
                  keepalive=60, username=None, password=None, tls=None, qos=1)
    return MqttLink(cfg, will=lambda: ("t/status", b"offline"), on_up=on_up, on_down=on_down, on_ack=on_ack)


async def connected(link, timeout: float = 10.0) -> asyncio.Task:
    """Start the link's task and wait until it is connected."""
    task = asyncio.ensure_future(link.run())
    deadline = time.monotonic() + timeout
    while not link.connected:
        assert time.monotonic() < deadline, "no MQTT connection"
        await asyncio.sleep(0.05)
    return task
