"""Processes and probes for bench/run: broker, simulators, wire emulator,
gateway, bare loop, MQTT subscriber, control-socket ping probe.

Every process is started in its own session and registered, so `Procs.stop_all`
(called from a finally, also on Ctrl-C) ends exactly what this run started,
by pid. Every wait is bounded.
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

from tests.support import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- processes

class Procs:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.live: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], *, env: dict | None = None,
              stdout=None) -> subprocess.Popen:
        log = open(self.work / f"{name}.log", "a")
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=stdout if stdout is not None else log,
                                stderr=log, text=True, start_new_session=True,
                                env={**os.environ, **(env or {})})
        proc.bench_name = name  # type: ignore[attr-defined]
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen | None, timeout: float = 15.0) -> int | None:
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc in self.live:
            self.live.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self.live)):
            try:
                self.stop(proc, timeout=5.0)
            except Exception:  # noqa: BLE001 - keep stopping the others
                pass


def realtime(proc: subprocess.Popen, priority: int = 5) -> str:
    """Put a process that stands for hardware (simulated meters, the line) at
    SCHED_FIFO, so that on a busy shared machine it answers like hardware,
    not like one more process waiting for a core. Needs root; the kernel's
    RT throttling keeps 5 % of each core for everyone else. The gateway and
    the bare loop always run at normal priority."""
    try:
        os.sched_setscheduler(proc.pid, os.SCHED_FIFO, os.sched_param(priority))
        return "fifo"
    except (OSError, AttributeError):
        return "normal"


def read_json_line(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    """The first stdout line of a child that announces itself in JSON."""
    box: list[str] = []
    t = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not box or not box[0]:
        raise RuntimeError(f"{what} did not start (see its log)")
    return json.loads(box[0])


def cpu_s(pid: int) -> float:
    """User + system CPU of a process and all its threads, dead ones included."""
    with open(f"/proc/{pid}/stat") as fh:
        f = fh.read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, all processes: the
    machine is shared, so each window says how busy it was."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


def busy_cores(a: tuple[int, int], b: tuple[int, int]) -> float:
    total = b[1] - a[1]
    return (b[0] - a[0]) / total * (os.cpu_count() or 1) if total else 0.0


def mem_mb(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


# --------------------------------------------------------------------------- broker

def start_broker(procs: Procs) -> int:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        raise RuntimeError("Mosquitto is not installed (make sysdeps)")
    port = free_port()
    conf = procs.work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 1000000\nmax_inflight_messages 0\n")
    procs.start("mosquitto", [exe, "-c", str(conf)])

    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    wait_until(up, 10, "mosquitto")
    return port


# --------------------------------------------------------------------------- subscriber

def find_key(obj, key: str):
    """The first value under `key` anywhere in a JSON document."""
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            r = find_key(v, key)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find_key(v, key)
            if r is not None:
                return r
    return None


class Subscriber:
    """Everything one gateway publishes, with arrival times and sizes."""

    def __init__(self, port: int, gateway_id: str) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.prefix = f"edgegw/{gateway_id}/"
        self.lock = threading.Lock()
        # (t, kind, topic bytes, payload bytes, telemetry values)
        self.msgs: list[tuple[float, str, int, int, int]] = []
        self.events: list[tuple[float, str, str, str]] = []   # (t, device, code, state)
        self.status: list[tuple[float, dict]] = []
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-sub-{gateway_id}")
        self.client.on_message = self._on_message

        def on_connect(c, u, f, rc, p):
            c.subscribe(self.prefix + "#", qos=1)
            self.connected.set()
        self.client.on_connect = on_connect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("subscriber could not connect")

    def _on_message(self, client, userdata, msg) -> None:
        t = time.monotonic()
        topic = msg.topic
        kind = topic.rsplit("/", 1)[-1]
        nvals = 0
        if kind in ("telemetry", "event", "status"):
            try:
                body = json.loads(msg.payload)
            except ValueError:
                body = {}
            if kind == "telemetry":
                nvals = len(body.get("values") or {})
            elif kind == "event" and isinstance(body, dict):
                with self.lock:
                    self.events.append((t, str(body.get("device")), str(body.get("code")),
                                        str(body.get("state"))))
            elif kind == "status" and isinstance(body, dict):
                with self.lock:
                    self.status.append((t, body))
        with self.lock:
            self.msgs.append((t, kind, len(topic.encode()), len(msg.payload), nvals))

    def window(self, t0: float, t1: float) -> list[tuple[float, str, int, int, int]]:
        with self.lock:
            return [m for m in self.msgs if t0 <= m[0] < t1]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def uplink_bytes(msgs) -> dict:
    """Bytes a QoS 1 PUBLISH of each message costs on the gateway's uplink:
    fixed header (1 + remaining-length varint), topic length (2), topic,
    packet id (2), payload; plus the broker's 4-byte PUBACK."""
    tp = mqtt = values = tele = 0
    for _t, kind, nt, npl, nv in msgs:
        rem = 2 + nt + 2 + npl
        varint = 1 if rem < 128 else 2 if rem < 16384 else 3
        mqtt += 1 + varint + rem + 4
        tp += nt + npl
        if kind == "telemetry":
            values += nv
            tele += 1
    return {"messages": len(msgs), "telemetry_msgs": tele, "values": values,
            "topic_payload_bytes": tp, "mqtt_bytes": mqtt,
            "bytes_per_value": tp / values if values else None,
            "mqtt_bytes_per_value": mqtt / values if values else None}


# --------------------------------------------------------------------------- ping probe

class PingProbe(threading.Thread):
    """Round trip of a `ping` on the daemon's control socket, every period_s:
    an outside view of event-loop lag (a stalled loop answers late)."""

    def __init__(self, sock_path: Path, period_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.path = str(sock_path)
        self.period = period_s
        self.samples: list[tuple[float, float]] = []   # (t sent, rtt s)
        self.failures = 0
        self._halt = threading.Event()

    def run(self) -> None:
        s = None
        n = 0
        buf = b""
        next_t = time.monotonic()
        while not self._halt.is_set():
            if s is None:
                try:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.settimeout(30)
                    s.connect(self.path)
                except OSError:
                    s = None
                    self._halt.wait(0.2)
                    continue
            n += 1
            t0 = time.monotonic()
            try:
                s.sendall(json.dumps({"id": n, "cmd": "ping"}).encode() + b"\n")
                while b"\n" not in buf:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise OSError("closed")
                    buf += chunk
                _line, _, buf = buf.partition(b"\n")
                self.samples.append((t0, time.monotonic() - t0))
            except OSError:
                self.failures += 1
                s.close()
                s, buf = None, b""
            next_t = max(next_t + self.period, time.monotonic())
            self._halt.wait(max(0.0, next_t - time.monotonic()))
        if s is not None:
            s.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# --------------------------------------------------------------------------- gateway

def gateway_config(work: Path, gw_id: str, broker_port: int, buses: list[dict],
                   devices: list[dict], state_dir: Path, device_extra: str = "",
                   extra: str = "") -> Path:
    """A site config (docs/configuration.md). buses: name, port and, for
    serial, baudrate; devices: name, bus, unit, model, poll_interval_s.
    device_extra: TOML lines put in every [[device]] (e.g. an option under
    test); extra: TOML appended at the end (e.g. an [outbox] table)."""
    lines = ["[gateway]", f'id = "{gw_id}"', f'state_dir = "{state_dir}"', 'language = "en"',
             'log_level = "info"', "", "[mqtt]", 'host = "127.0.0.1"', f"port = {broker_port}",
             "keepalive = 30", ""]
    for b in buses:
        lines += ["[[bus]]", f'name = "{b["name"]}"', f'port = "{b["port"]}"',
                  f'timeout_s = {b.get("timeout_s", 1.0)}']
        if not b["port"].startswith("tcp://"):
            # A pty may refuse parity (docs/simulators.md): 8N2, whose
            # 11-bit characters are what the wire emulator times (as 8E1).
            # The gateway times t3.5 and its paced reads by the character
            # time it is configured with, as on a site, where the line's
            # settings must match or nothing is understood.
            lines += [f'baudrate = {b["baudrate"]}', 'parity = "N"', "stopbits = 2"]
        lines.append("")
    for d in devices:
        lines += ["[[device]]", f'name = "{d["name"]}"', f'bus = "{d["bus"]}"', f'unit = {d["unit"]}',
                  f'model = "{d["model"]}"', f'poll_interval_s = {d["poll_interval_s"]}']
        if device_extra:
            lines.append(device_extra)
        lines.append("")
    if extra:
        lines.append(extra)
    path = work / f"{gw_id}.toml"
    path.write_text("\n".join(lines))
    return path


def start_gateway(procs: Procs, cfg: Path, name: str, env: dict | None = None) -> subprocess.Popen:
    return procs.start(name, [PY, "-m", "gateway", "run", "--config", str(cfg)], env=env)


# --------------------------------------------------------------------------- simulators

def start_farm(procs: Procs, name: str, ports: int, units: int, out: Path,
               flips: Path | None = None) -> tuple[subprocess.Popen, list[int]]:
    argv = [PY, "-m", "simulators.tcpfarm", "--ports", str(ports), "--units", str(units),
            "--out", str(out)]
    if flips is not None:
        argv += ["--flips", str(flips)]
    proc = procs.start(name, argv, stdout=subprocess.PIPE)
    ports = read_json_line(proc, 60, name)["ports"]
    realtime(proc)
    return proc, ports


def farm_record(proc: subprocess.Popen, out: Path, timeout: float = 30) -> dict:
    """Ask the farm for what it recorded (SIGUSR1) and read it."""
    before = out.stat().st_mtime_ns if out.exists() else 0
    proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: out.exists() and out.stat().st_mtime_ns != before, timeout, "farm record")
    time.sleep(0.05)
    with open(out) as fh:
        return json.load(fh)


def start_wire(procs: Procs, name: str, baud: int, bits: int, turnaround_s: float,
               stats: Path) -> tuple[subprocess.Popen, dict]:
    d = procs.work / name
    proc = procs.start(name, [PY, "-m", "simulators.wire", "--baud", str(baud), "--bits", str(bits),
                              "--turnaround-ms", str(turnaround_s * 1000), "--dir", str(d),
                              "--stats", str(stats), "--nice", "-5", "--realtime"], stdout=subprocess.PIPE)
    return proc, read_json_line(proc, 30, name)


def wire_stats(path: Path) -> dict:
    return wait_until(lambda: path.exists() and json.loads(path.read_text() or "null"), 10, "wire stats")


def start_rtu_sim(procs: Procs, name: str, port: str, baud: int, units: int) -> subprocess.Popen:
    """edgegw-sim serving `units` turbine meters on the slave end of the wire."""
    scen = procs.work / f"{name}.toml"
    lines = ["[simulator]", "tick_s = 0.5", "", "[[bus]]", 'name = "rtu"', 'kind = "serial"',
             f'port = "{port}"', f"baudrate = {baud}", 'parity = "N"', ""]
    for u in range(1, units + 1):
        lines += ["[[device]]", 'bus = "rtu"', f"unit = {u}", 'model = "turbine-evc"',
                  f'name = "fm-{u:02d}"', ""]
    scen.write_text("\n".join(lines))
    proc = procs.start(name, [PY, "-m", "simulators.cli", "--scenario", str(scen), "--json",
                              "--log-level", "warning"], stdout=subprocess.PIPE)
    read_json_line(proc, 30, name)
    realtime(proc)
    return proc


# --------------------------------------------------------------------------- slow disk

SHIM_SRC = ROOT / "bench" / "slowfsync.c"


def build_slowfsync(into: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("no C compiler: the slow-disk shim needs gcc (apt-get install gcc)")
    so = into / "slowfsync.so"
    subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-o", str(so), str(SHIM_SRC), "-ldl"],
                   check=True, capture_output=True, text=True)
    return so


def check_slowfsync(so: Path, ms: float) -> dict:
    """os.fsync and an SQLite commit (synchronous=FULL) under the shim: both
    must take at least the delay, or the shim is not doing its job."""
    code = ("import os,sqlite3,tempfile,time,json\n"
            "d=tempfile.mkdtemp(); fd=os.open(os.path.join(d,'f'),os.O_CREAT|os.O_WRONLY)\n"
            "os.write(fd,b'x'); t=time.perf_counter(); os.fsync(fd); a=time.perf_counter()-t\n"
            "t=time.perf_counter(); os.fdatasync(fd); b=time.perf_counter()-t\n"
            "c=sqlite3.connect(os.path.join(d,'db')); c.execute('pragma journal_mode=wal');"
            "c.execute('pragma synchronous=full'); c.execute('create table t(x)'); c.commit()\n"
            "t=time.perf_counter(); c.execute('insert into t values(1)'); c.commit(); s=time.perf_counter()-t\n"
            "print(json.dumps({'fsync_s':a,'fdatasync_s':b,'sqlite_commit_s':s}))\n")
    out = {}
    for label, env in (("plain", {}), ("shim", {"LD_PRELOAD": str(so), "SLOWFSYNC_MS": str(ms)})):
        r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60,
                           env={**os.environ, **env})
        out[label] = json.loads(r.stdout.strip().splitlines()[-1])
    delay = ms / 1000
    out["works"] = all(out["shim"][k] >= delay for k in ("fsync_s", "fdatasync_s", "sqlite_commit_s"))
    return out


def temp_work(prefix: str = "edgegw-bench-") -> Path:
    # on the real disk, not tmpfs: fsync must cost what it costs
    base = "/var/tmp" if os.path.isdir("/var/tmp") else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
