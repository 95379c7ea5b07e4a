"""The state folder fills up for real (a 2 MB tmpfs) while the uplink is
down, then the uplink comes back: the outbox must drain everything it holds,
alarms in order, and come back to health "ok" with no operator action.

The real gateway process polls simulated meters over Modbus TCP (every 0.2 s)
whose temperature sensor fails and recovers over and over, so fault edges
(raised / cleared events) are produced before, during and after the full
disk. Counted: the edges the gateway logged as produced equal the edges the
broker delivered (duplicates only under the same seq); per device they
arrive in the order they happened; the backlog drains; health returns to
"ok"; and the log has no traceback while state.json cannot be written.

Bounded (about 90 s, at most about 160 s when the MQTT reconnect back-off
rolls long): the tmpfs is mostly taken by a filler file first, so
the outbox needs only a few hundred kB to fill it; once the outbox says the
disk is full, the test takes the last free bytes itself, as another program
on the box would.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from gateway.deliver.mqtt import BACKOFF_MAX_S
from tests.support import (ROOT, Broker, Subscriber, Uplink, free_port, gateway_config,
                           start_gateway, start_sim, stop_proc, wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N = 10
POLL_S = 0.2
FS_SIZE = "2m"
# What the filler leaves for the gateway's files (outbox, its reserve, state.json, history).
LEAVE_FREE = 1100 * 1024
TOGGLE_S = 3.0          # each meter's sensor flips this often ...
TOGGLE_UNTIL = 64.0     # ... until this scenario time; then edges stop and can be counted
STATE_FLUSH_S = 60.0    # gateway/daemon.py STATE_FLUSH_INTERVAL_S: the run spans one (the disk stays full)
EDGE = re.compile(r"device (fm-\d+): fault (\S+) (raised|cleared)")


def scenario(port: int) -> str:
    out = ["[simulator]", "tick_s = 0.1", "", "[[bus]]", 'name = "tcp-1"', 'kind = "tcp"',
           f'listen = "127.0.0.1:{port}"', ""]
    for u in range(1, N + 1):
        out += ["[[device]]", 'bus = "tcp-1"', f"unit = {u}", 'model = "turbine-evc"',
                f'name = "fm-{u:02d}"',
                "pin = { flow_m3h = 40.0, temperature_C = 15.0, pressure_kPa = 300.0, battery_V = 3.6 }",
                ""]
    # staggered so that edges of different meters interleave
    for u in range(1, N + 1):
        t, on = 1.0 + u * 0.27, True
        while t < TOGGLE_UNTIL:
            key = "on" if on else "off"
            out += ["[[event]]", f"t = {t:.2f}", f'device = "fm-{u:02d}"',
                    f'bits = {{ field = "status_word", {key} = [2] }}', ""]
            t += TOGGLE_S
            on = not on
    return "\n".join(out)


class Tmpfs:
    def __init__(self, where: Path, size: str) -> None:
        self.dir = where
        where.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", str(where)],
                           capture_output=True, text=True)
        self.mounted = r.returncode == 0
        self.why = r.stderr.strip()

    def free(self) -> int:
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize

    def fill_to(self, leave: int) -> None:
        with open(self.dir / "filler", "wb") as f:
            f.write(b"\0" * max(0, self.free() - leave))
            f.flush()
            os.fsync(f.fileno())

    def squeeze(self) -> None:
        """Take every byte left, as another program filling the disk would."""
        fd = os.open(self.dir / "squeeze", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.dir)], capture_output=True)


def status(cfg: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "gateway", "status", "--config", str(cfg), "--json"],
                       cwd=ROOT, capture_output=True, text=True, timeout=20)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def outbox_health(cfg: Path) -> tuple[str | None, int | None]:
    ob = status(cfg).get("outbox") or {}
    return ob.get("health"), ob.get("backlog_msgs")


def stop_all(gw, sim, sub, uplink, broker, fs: Tmpfs) -> None:
    """Whatever of the rig was started, stopped; the tmpfs unmounted."""
    stop_proc(gw)
    stop_proc(sim)
    if sub is not None:
        sub.close()
    if uplink is not None:
        uplink.down()
    if broker is not None:
        broker.stop()
    fs.umount()


def edges(work: Path, sub) -> tuple[str, list[tuple[str, str, str]], list[dict]]:
    """The gateway's log, the fault edges it logged as produced, and the
    fault events the subscriber received (duplicates included)."""
    log = (work / "gateway.log").read_text()
    return log, EDGE.findall(log), [b for b in sub.select("/event") if b.get("type") == "fault"]


def seq_holes(sub) -> list[int]:
    """Seqs missing between the lowest and the highest delivered."""
    seqs = sorted({b["seq"] for b in sub.select() if b.get("seq") is not None})
    return sorted(set(range(seqs[0], seqs[-1] + 1)) - set(seqs)) if seqs else []


def ts_of(body: dict) -> float:
    return datetime.fromisoformat(body["ts"].replace("Z", "+00:00")).timestamp()


def test_full_disk_drains_everything_in_order_and_recovers(tmp_path):
    fs = Tmpfs(tmp_path / "state", FS_SIZE)
    if not fs.mounted:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {fs.why}")
    broker = sub = uplink = sim = gw = None
    t_start = time.monotonic()

    def note(what: str) -> None:  # shown when the test fails
        print(f"{time.monotonic() - t_start:6.1f} s  {what}; free {fs.free() // 1024} KiB", flush=True)
    try:
        fs.fill_to(LEAVE_FREE)
        broker = Broker(tmp_path).start()
        sub = Subscriber(broker.port)
        uplink = Uplink(broker.port)
        sim, where = start_sim(tmp_path, scenario(free_port()))
        # flap suppression off: every flip of the sensor is an edge
        devices = [{"name": f"fm-{u:02d}", "bus": "tcp-1", "unit": u, "model": "turbine-evc",
                    "poll_s": POLL_S, "params": {"flap_count": 1000}} for u in range(1, N + 1)]
        cfg = gateway_config(tmp_path, uplink.port, where["buses"], devices, timeout_s=0.5)
        gw = start_gateway(cfg)
        t_gw = time.monotonic()
        sub.wait_for(lambda s: len({b["device"] for b in s.select("/telemetry")}) == N, 30,
                     "telemetry from every meter")

        note("all meters publish; uplink down")
        uplink.down()
        wait_until(lambda: outbox_health(cfg)[0] == "disk_full", 50, "the outbox to fill the disk", 1.0)
        note("outbox reports disk_full")
        # The outbox stops short of the last bytes; something else takes them.
        fs.squeeze()
        assert fs.free() == 0
        time.sleep(8.0)   # long enough for new edges to be held in memory
        assert gw.poll() is None

        note("uplink up")
        uplink.up()   # no operator action: the filler stays where it is
        # The reconnect waits out the back-off reached while the uplink was
        # down (jittered, up to BACKOFF_MAX_S): the drain is timed from the
        # reconnect, or the test fails on a slow roll of the jitter.
        wait_until(lambda: _connects(tmp_path) >= 2, BACKOFF_MAX_S + 10, "the gateway to reconnect", 0.5)
        note("reconnected")
        wait_until(lambda: outbox_health(cfg) == ("ok", 0) or _live_and_ok(sub, cfg), 45,
                   "the backlog to drain and health to return to ok", 1.0)
        note("drained, health ok")
        # The filler and the squeeze stay. Around the state flush (60-65 s
        # after the start, at a housekeeping turn) whatever the gateway has
        # given back meanwhile (its ballast, a checkpointed WAL:
        # outbox_space.py) is taken again as soon as it is free, as another
        # program filling the disk would: the flush meets a full disk.
        wait_until(lambda: time.monotonic() - t_gw > STATE_FLUSH_S - 2, 60, "the state flush to come")
        while time.monotonic() - t_gw < STATE_FLUSH_S + 7:
            fs.squeeze()
            time.sleep(0.1)
        # By then every edge the simulator will cause has happened too.
        wait_until(lambda: time.monotonic() - t_start > TOGGLE_UNTIL + 4, 30, "the last edge")
        wait_until(lambda: _live_and_ok(sub, cfg), 20, "the last edges to be delivered", 1.0)
        time.sleep(1.0)
        assert stop_proc(gw) == 0
        gw = None
    finally:
        stop_all(gw, sim, sub, uplink, broker, fs)

    log, produced, events = edges(tmp_path, sub)
    # a seq always names one message: a duplicate is recognisable by seq alone
    by_seq: dict[int, dict] = {}
    for b in events:
        assert by_seq.setdefault(b["seq"], b) == b, f"seq {b['seq']} names two messages"
    delivered = sorted(by_seq.values(), key=lambda b: b["seq"])
    assert len(produced) > 15 * N, f"too few edges to judge: {len(produced)}"
    got = sorted((b["device"], b["code"], b["state"]) for b in delivered)
    assert got == sorted(produced), (
        f"produced {len(produced)} edges, delivered {len(delivered)} distinct")
    # the same event never arrives under two seqs
    keys = [(b["device"], b["code"], b["state"], b["ts"]) for b in delivered]
    assert len(keys) == len(set(keys)), "an edge was delivered under two seqs"
    # Alarm order: per meter, edges arrive (first arrivals) in the order they
    # happened, raised and cleared alternating; and across meters no edge is
    # delivered ahead of one that happened more than a second earlier.
    first: list[dict] = []
    seen: set[int] = set()
    for b in events:
        if b["seq"] not in seen:
            seen.add(b["seq"])
            first.append(b)
    for u in range(1, N + 1):
        mine = [b for b in first if b["device"] == f"fm-{u:02d}"]
        times = [ts_of(b) for b in mine]
        assert times == sorted(times), f"fm-{u:02d}: events out of order"
        states = [b["state"] for b in mine]
        assert all(a != b for a, b in zip(states, states[1:])), f"fm-{u:02d}: {states}"
    latest = float("-inf")
    for b in first:
        assert ts_of(b) > latest - 1.0, f"{b['device']} {b['state']} at {b['ts']} arrived after a later edge"
        latest = max(latest, ts_of(b))
    # Nothing lost after it was sent: the seqs of everything delivered have no hole.
    holes = seq_holes(sub)
    assert not holes, f"seq holes: {holes[:20]}"
    # One clear warning about state.json, not a traceback every 5 s.
    assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
    state_warnings = [ln for ln in log.splitlines() if "state.json" in ln]
    assert 1 <= len(state_warnings) <= 3, state_warnings


def _connects(work: Path) -> int:
    return (work / "gateway.log").read_text().count("mqtt: connected to")


def _live_and_ok(sub, cfg) -> bool:
    """Health ok, nothing held in memory, and the newest telemetry delivered
    was read just now: the outbox drains oldest first, so all older is out."""
    tel = sub.timed("/telemetry")
    if not tel:
        return False
    newest = max(ts_of(b) for _t, b in tel[-N * 3:])
    if time.time() - newest > 2.0:
        return False
    health, _backlog = outbox_health(cfg)
    return health == "ok"
