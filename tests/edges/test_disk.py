"""A full disk and a read-only state folder, on real tmpfs mounts, with the
promise counted (promise.py).

The gateway's state folder is its own tmpfs. Six turbine meters on Modbus
TCP are polled every 0.25 s; two of them raise and clear a fault every 4 s
(TEMP-SENSOR, debounce 2). Twice in one life the uplink goes down so a
backlog builds, and then the folder fails:

    full disk    a ballast file takes every free byte; deleting it gives the
                 space back
    read-only    `mount -o remount,ro`, later `remount,rw`

The first time the folder is repaired while the uplink is still down, the
second time the uplink comes back first, over a folder still failing, and
the folder is repaired while the backlog drains.

The promise (docs/durability.md, "Disk full, read-only filesystem"): while
the folder fails, readings and state may be dropped (counted); events are
held in memory and no event is lost. Once the folder is writable again
everything stored drains with no operator action, the fault edges arrive
each exactly once and in the order they happened, health is back to `ok`,
and nothing is logged as a traceback.
"""
from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from gateway.deliver.mqtt import BACKOFF_MAX_S
from tests.edges.promise import (SOAK_S, Figures, FlakyUplink, Watch, account, count_wrong, delivered_edges,
                                 ledger, pinned_meter, settle, tear_down, tracebacks)
from tests.support import (ROOT, Broker, Subscriber, free_port, gateway_config, outbox_figures, start_gateway,
                           start_sim, stop_proc)

pytestmark = [pytest.mark.integration, pytest.mark.edges]

N = 6
TOGGLERS = ("fm-05", "fm-06")
STRETCH_S = 4.0
FULL_S = 6.0     # how long the folder fails in each round


class Tmpfs:
    """A tmpfs mounted on `path` for the test; unmounted at the end."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0750", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({out.stderr.strip() or out.returncode}): "
                        "needs root and mount permission")
        self.ballast = path / "ballast"

    def fill(self) -> int:
        """Take every free byte with a ballast file in the mount."""
        n = 0
        with open(self.ballast, "ab", buffering=0) as fh:
            chunk = b"\0" * 65536
            while True:
                try:
                    n += fh.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[: len(chunk) // 2]
        return n

    def free(self) -> None:
        self.ballast.unlink()

    def remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True)

    def close(self) -> None:
        out = subprocess.run(["umount", str(self.path)], capture_output=True, text=True)
        if out.returncode != 0:     # still busy: detach it now, the kernel frees it when idle
            subprocess.run(["umount", "-l", str(self.path)], check=True)


@pytest.fixture
def state_tmpfs(tmp_path):
    fs = Tmpfs(tmp_path / "state", "8m")
    yield fs
    fs.close()


def scenario(port: int, run_s: float) -> tuple[str, dict[str, list[str]]]:
    out = ["[simulator]", "tick_s = 0.1", "", "[[bus]]", 'name = "tcp-1"', 'kind = "tcp"',
           f'listen = "127.0.0.1:{port}"', ""]
    for u in range(1, N + 1):
        out += ["[[device]]", 'bus = "tcp-1"', f"unit = {u}", 'model = "turbine-evc"', f'name = "fm-{u:02d}"',
                pinned_meter(), ""]
    edges: dict[str, list[str]] = {}
    for j, name in enumerate(TOGGLERS):
        t, on = 3.0 + j * STRETCH_S / 2, True
        while t < run_s:
            out += ["[[event]]", f"t = {t}", f'device = "{name}"',
                    f'bits = {{ field = "status_word", {"on" if on else "off"} = [2] }}', ""]
            edges.setdefault(name, []).append("raised" if on else "cleared")
            t, on = t + STRETCH_S, not on
    return "\n".join(out), edges


def meters() -> list[dict]:
    """The gateway's view of the scenario's meters; flap suppression out of
    the togglers' way, so that every toggle is an edge to count."""
    devices = [{"name": f"fm-{u:02d}", "bus": "tcp-1", "unit": u, "model": "turbine-evc", "poll_s": 0.25}
               for u in range(1, N + 1)]
    for d in devices:
        if d["name"] in TOGGLERS:
            d["params"] = {"flap_count": 1000, "flap_window_s": 60}
    return devices


def field_status(cfg: Path, part: str = "outbox") -> dict:
    """`edgegw status --json`: the daemon's own view, through its control socket
    (which lives in the state folder, so it must work on a failing disk too)."""
    out = subprocess.run([sys.executable, "-m", "gateway", "status", "--config", str(cfg), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=20)
    try:
        return json.loads(out.stdout)[part]
    except (ValueError, KeyError):
        return {"health": None, "error": (out.stdout + out.stderr)[-300:]}


def not_ok(record: dict, key: str, status: dict) -> bool:
    record[key] = status
    return status.get("health") not in ("ok", None)


def fresh(sub) -> bool:
    tel = sub.select("/telemetry")
    if not tel:
        return False
    ts = datetime.fromisoformat(tel[-1]["ts"].replace("Z", "+00:00"))
    return (datetime.now(timezone.utc) - ts).total_seconds() < 1.5


def run_rounds(tmp_path: Path, fs: Tmpfs, what: str) -> tuple[Figures, dict, list]:
    # Two rounds (about 20 s each), or as many as the soak's length holds.
    run_s = max(2 * (FULL_S + 14), SOAK_S) + 90
    state = fs.path
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    uplink = FlakyUplink(broker.port)
    text, _ = scenario(free_port(), run_s)
    t_sim = time.monotonic()        # before: the simulator's clock starts while it starts up
    sim, where = start_sim(tmp_path, text)
    cfg = gateway_config(tmp_path, uplink.port, where["buses"], meters(), timeout_s=0.5)
    fig = Figures(what)
    seen: list[dict] = []
    problem = None
    gw = start_gateway(cfg)
    watch = Watch(gw)
    try:
        sub.wait_for(lambda s: len(s.select("/telemetry")) >= N * 2, 30, "telemetry from all meters")
        time.sleep(2.0)
        watch.start()
        t_rounds, r = time.monotonic(), -1
        while problem is None and (r < 1 or time.monotonic() - t_rounds < SOAK_S):
            try:
                r += 1
                repaired_while_down = r % 2 == 0
                uplink.down()
                time.sleep(2.0)                             # a backlog on disk
                before = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                fs.fill()
                seen.append({"round": r, "repaired_while": "down" if repaired_while_down else "up"})
                # (after a few rounds the database holds free pages from drained
                # backlogs, which fill before SQLite needs the filesystem again)
                if not settle(lambda: not_ok(seen[-1], "failing", field_status(cfg)), 90, 0.5):
                    problem = f"round {r}: the disk is full but the outbox still says ok: {seen[-1]}"
                time.sleep(FULL_S / 2)
                if repaired_while_down:
                    time.sleep(FULL_S / 2)
                    fs.free()
                    time.sleep(2.0)
                    uplink.up()
                else:
                    t_window = time.monotonic()              # the stored backlog drains fast
                    uplink.up()                              # back over a full disk
                    # after a long cut the reconnect back-off has grown to its
                    # cap (deliver/mqtt.py): the gateway may wait that long
                    if not settle(lambda: field_status(cfg, "broker").get("connected"), BACKOFF_MAX_S + 15, 0.5):
                        problem = f"round {r}: not connected again over a full disk: {field_status(cfg, 'broker')}"
                    time.sleep(FULL_S / 2)
                    # The outbox must make progress on what it holds even now:
                    # what was stored before the disk filled goes out.
                    seen[-1]["up_while_full"] = field_status(cfg)
                    seen[-1]["sent_while_full"] = sum(1 for t, b in sub.timed("") if t >= t_window
                                                      and b.get("seq") and b.get("ts", "~") < before)
                    fs.free()
                healthy = settle(lambda: field_status(cfg).get("health") == "ok", 30, 0.5)
                seen[-1]["space_back"] = field_status(cfg)
                if not healthy:
                    problem = problem or f"round {r}: health never came back to ok: {seen[-1]}"
                    break
                back = len(sub.select("/telemetry"))
                drained = settle(lambda: len(sub.select("/telemetry")) > back and fresh(sub)
                                 and field_status(cfg).get("backlog_msgs", 999) <= 50, 60, 0.5)
                seen[-1]["drained"] = field_status(cfg)
                if not drained:
                    problem = problem or f"round {r}: the backlog never drained: {seen[-1]}"
            except Exception as exc:  # noqa: BLE001 - reported with the figures, then raised
                problem = problem or f"round {r}: {exc!r}"
        if fs.ballast.exists():                          # a round that stopped half-way
            fs.free()
            uplink.up()
        # every toggle so far has had its polls
        time.sleep(STRETCH_S)
        watch.end()
        fig.crashes = 0 if gw.poll() is None else 1
        assert stop_proc(gw) == 0, "the gateway did not stop cleanly"
        watch.into(fig)
        fig.seconds = round(time.monotonic() - t_sim, 1)
        t_stop = time.monotonic() - t_sim
    finally:
        tear_down(gw, sim, sub, broker, uplink)
    try:
        led = account(fig, sub, "edgegw/t1/status", state, allow_drops=("telemetry", "state"))
    except AssertionError as exc:
        problem = problem or str(exc)
        led = ledger(sub, "edgegw/t1/status")
    fig.wrong = (count_wrong(led, t_stop, (0,), [f"fm-{u:02d}" for u in range(1, N + 1)
                                                 if f"fm-{u:02d}" not in TOGGLERS])
                 + count_wrong(led, t_stop, (0, 4), TOGGLERS))
    fig.tracebacks = tracebacks(tmp_path / "gateway.log")
    edges = toggles_before(t_stop)
    got = {n: delivered_edges(sub, n, "TEMP-SENSOR") for n in TOGGLERS}
    fig.notes.update(rounds=len(seen), fault_edges={n: len(g) for n, g in got.items()},
                     simulator_edges={n: len(e) for n, (e, _sure) in edges.items()}, health=seen, problem=problem)
    fig.report()
    assert problem is None, problem
    return fig, {"edges": edges, "got": got}, led


def toggles_before(t_stop: float) -> dict[str, tuple[list[str], int]]:
    """The simulator's toggles up to the gateway's stop (t_stop on the
    simulator's clock, counted from a little before it started), and how
    many of them came at least 1.5 s before the stop: those the gateway
    must have seen. The ones in the last 1.5 s may or may not have been."""
    _text, upto = scenario(0, t_stop + 0.5)
    _text, sure = scenario(0, t_stop - 1.5)
    return {n: (upto[n], len(sure.get(n, []))) for n in upto}


def check(fig: Figures, edges: dict) -> None:
    for name in TOGGLERS:
        got, (want, seen_by_then) = edges["got"][name], edges["edges"][name]
        states = [s for _ts, s in got]
        # each toggle exactly once, in the order it happened (one transaction
        # at a time: seq order is the order the gateway saw them)
        assert states == want[:len(states)] and len(states) >= seen_by_then - 1, (name, states, want, seen_by_then)
        assert [ts for ts, _s in got] == sorted(ts for ts, _s in got), f"{name}: alarms out of order: {got}"
    fig.check()


def test_disk_full_then_space_back(tmp_path, state_tmpfs):
    fig, edges, _led = run_rounds(tmp_path, state_tmpfs, "disk full (tmpfs)")
    check(fig, edges)
    for r in fig.notes["health"]:
        if "sent_while_full" in r:
            assert r["sent_while_full"] > 0, f"nothing stored went out while the disk was full: {r}"


def test_read_only_state_folder_then_writable(tmp_path, state_tmpfs):
    """A state folder that is read-only when the gateway starts (an SD card
    that failed into read-only mode) and is made writable later.

    Linux refuses to remount a filesystem read-only while a file on it is
    open for writing (EBUSY), and the outbox always has its database open:
    so on a real tmpfs a read-only folder is one the gateway meets at start.
    The promise there (docs/durability.md, "Read-only at boot"): no exit and
    no restart loop, polling and alarms go on from a store in RAM, the status
    says `ram_only` and a `store_unwritable` event goes out; a backlog built
    while the uplink is down drains from RAM. The folder is made writable
    once while the uplink is down and once while it is up: the running
    gateway keeps to RAM (it says so), and the next start uses the folder,
    with health `ok`.
    """
    fs = state_tmpfs
    fs.remount("ro")
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    uplink = FlakyUplink(broker.port)
    text, _ = scenario(free_port(), max(40.0, SOAK_S) + 90)
    t_sim = time.monotonic()        # before: the simulator's clock starts while it starts up
    sim, where = start_sim(tmp_path, text)
    cfg = gateway_config(tmp_path, uplink.port, where["buses"], meters(), timeout_s=0.5)
    fig = Figures("read-only state folder (tmpfs, at start)")
    statuses = lambda: [b for b in sub.select("/t1/status") if b.get("seq")]   # noqa: E731
    gw = start_gateway(cfg)
    watch = Watch(gw)
    lives = []
    try:
        sub.wait_for(lambda s: len(s.select("/telemetry")) >= N * 2, 30, "telemetry from all meters")
        time.sleep(2.0)
        watch.start()
        t_rounds, r, more = time.monotonic(), -1, True
        while more:
            r += 1
            uplink.down()
            time.sleep(3.0)                               # a backlog, in RAM
            if r % 2 == 0:
                fs.remount("rw")                          # repaired while the uplink is down
                time.sleep(2.0)
                uplink.up()
            else:
                uplink.up()
                time.sleep(2.0)
                fs.remount("rw")                          # ... and while it is up
            back = len(sub.select("/telemetry"))
            assert settle(lambda: len(sub.select("/telemetry")) > back and fresh(sub), 30), \
                f"round {r}: the RAM backlog never drained"
            more = r < 1 or time.monotonic() - t_rounds < SOAK_S
            if more:
                fs.remount("ro")                          # nothing of ours is open on it
        # The running gateway still says what it runs on.
        assert statuses()[-1]["store"]["health"] == "ram_only", statuses()[-1]["store"]
        time.sleep(STRETCH_S)
        watch.end()
        lives.append(0 if gw.poll() is None else 1)
        assert stop_proc(gw) == 0, "the gateway did not stop cleanly"
        watch.into(fig)
        # The next start (the site visit) uses the folder.
        gw = start_gateway(cfg)
        t_start = time.monotonic()
        sub.wait_for(lambda s: any(t > t_start and b.get("online") and b.get("store", {}).get("health") == "ok"
                                   for t, b in s.timed("/t1/status")), 20, "health ok after the restart")
        time.sleep(2.0)
        lives.append(0 if gw.poll() is None else 1)
        assert stop_proc(gw) == 0
        fig.seconds = round(time.monotonic() - t_sim, 1)
        t_stop = time.monotonic() - t_sim
    finally:
        tear_down(gw, sim, sub, broker, uplink)

    fig.crashes = sum(lives)
    fig.tracebacks = tracebacks(tmp_path / "gateway.log")
    events = [b for b in sub.select("/t1/event") if b.get("code") == "store_unwritable"]
    edges = toggles_before(t_stop)
    got, repeated = {}, {}
    for n in TOGGLERS:
        # The RAM life came first; its seqs count from the Unix time in ms.
        evs = sorted(((s < 10**12, s, b) for s, b in ((b["seq"], b) for b in sub.select("/event", n))
                      if b.get("code") == "TEMP-SENSOR"), key=lambda e: (e[0], e[1]))
        evs = list({s: (ram_first, b) for ram_first, s, b in evs}.values())
        seq_edges = [(b["ts"], b["state"], on_disk) for on_disk, b in evs]
        # The RAM store's memory of a standing fault ends with its life: the
        # next start announces the fault again (docs/durability.md, "Read-only
        # at boot": what is stored is lost on a restart). Exactly that repeat.
        for i in range(1, len(seq_edges)):
            if seq_edges[i][2] and not seq_edges[i - 1][2]:
                if seq_edges[i][1] == seq_edges[i - 1][1] == "raised":
                    repeated[n] = seq_edges.pop(i)[0]
                break
        got[n] = [(ts, st) for ts, st, _d in seq_edges]
    # Two stores, two seq ranges: the RAM store counts from the Unix time in
    # ms, the folder's from 1. Nothing may be missing within either.
    led = ledger(sub, "edgegw/t1/status")
    ram = sorted(s for s in led.by_seq if s > 10**12)
    disk = sorted(s for s in led.by_seq if s < 10**12)
    ob = outbox_figures(fs.path)
    fig.produced = (ram[-1] - ram[0] + 1 if ram else 0) + ob["seq_next"] - 1 + ob["backlog"]
    fig.delivered = len(ram) + len(disk)
    fig.duplicates = led.duplicates
    fig.wrong = (count_wrong(led, t_stop, (0,), [f"fm-{u:02d}" for u in range(1, N + 1)
                                                 if f"fm-{u:02d}" not in TOGGLERS])
                 + count_wrong(led, t_stop, (0, 4), TOGGLERS))
    fig.notes.update(store_unwritable_events=len(events), rounds=r + 1, ram_seqs=len(ram), disk_seqs=len(disk),
                     fault_edges={n: len(g) for n, g in got.items()}, conflicts=len(led.conflicts),
                     raised_again_after_restart=repeated)
    fig.report()
    assert not led.conflicts, led.conflicts[:3]
    assert events and events[0]["severity"] == "major", "no store_unwritable event"
    assert ob["backlog"] == 0 and not any(ob["dropped"].values()), ob
    check(fig, {"edges": edges, "got": got})
