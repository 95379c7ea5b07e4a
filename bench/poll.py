"""Poll-path benchmark: prints figures and ratios against the design targets.

Runs the simulator (a separate process, Modbus TCP on 127.0.0.1) with N
turbine meters, a local Mosquitto, and the real Daemon in this process, then
measures:

- CPU per device poll (process CPU time of the gateway / polls), including
  decode, interpretation, the outbox commit and publishing, and CPU per
  message published.
- polls per second on the bus (TCP: no wire time, so this is the gateway's
  own ceiling, not an RS-485 figure).
- event-loop lag: a 5 ms timer's lateness, sampled all the time (p50, p99,
  p99.9, max), and the worst lag around each state flush (forced every
  --flush-every seconds instead of once a minute).
- time the event loop itself spends in store calls: the group commit, the
  state flush, the snapshot save (the rest runs on the store's thread).
- RSS with N devices, and CPU when nothing is due (every device on a 1 h
  interval).

--fsync-ms D makes every fsync/fdatasync of this process sleep D ms first
(bench/slowsync.c, preloaded), to stand in for an SD card.

Usage: python bench/poll.py [--devices 100] [--seconds 20] [--interval 0.5]
                            [--flush-every 10] [--fsync-ms 0] [--no-idle]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import gateway.daemon as daemon_mod  # noqa: E402
from gateway.daemon import Daemon  # noqa: E402
from gateway.site import logsetup  # noqa: E402
from gateway.site.config import load_config  # noqa: E402
from tests.support import Broker, free_port, gateway_config, start_sim, stop_proc  # noqa: E402

HERE = Path(__file__).resolve().parent


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


PER_BUS = 200  # devices per Modbus TCP endpoint (unit ids 1..200)


def bus_of(u: int) -> tuple[str, int]:
    """(bus name, unit id) of device number u (1-based)."""
    return f"tcp-{(u - 1) // PER_BUS + 1}", (u - 1) % PER_BUS + 1


def scenario(n: int) -> str:
    out = ["[simulator]", "tick_s = 0.5", ""]
    for b in range((n - 1) // PER_BUS + 1):
        out += ["[[bus]]", f'name = "tcp-{b + 1}"', 'kind = "tcp"', f'listen = "127.0.0.1:{free_port()}"', ""]
    for u in range(1, n + 1):
        bus, unit = bus_of(u)
        out += ["[[device]]", f'bus = "{bus}"', f"unit = {unit}", 'model = "turbine-evc"',
                f'name = "fm-{u:03d}"',
                "pin = { flow_m3h = 40.0, temperature_C = 15.0, pressure_kPa = 300.0, battery_V = 3.6 }", ""]
    return "\n".join(out)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


class Timed:
    """Wall time the event loop spends inside a synchronous call."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, float]] = []   # (start, seconds)

    def wrap(self, fn):
        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.calls.append((t, time.perf_counter() - t))
        return timed

    def summary(self) -> str:
        d = [s * 1000 for _t, s in self.calls]
        if not d:
            return "no calls"
        return f"{len(d)} calls, p50 {pct(d, 50):.2f} ms, p99 {pct(d, 99):.2f} ms, max {max(d):.2f} ms"


async def measure(cfg_path: Path, seconds: float, flush_every: float | None) -> dict:
    cfg = load_config(cfg_path)
    if flush_every:
        daemon_mod.STATE_FLUSH_INTERVAL_S = flush_every
    d = Daemon(cfg)
    lags: list[tuple[float, float]] = []

    async def sampler() -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append((t, time.perf_counter() - t - 0.005))

    task = asyncio.create_task(d.run())
    lagger = asyncio.create_task(sampler())
    await asyncio.sleep(3)  # connect, first polls, imports warm
    commit, state, snaps, seqs = Timed(), Timed(), Timed(), Timed()
    if getattr(d, "commit", None) is not None:
        d.commit.flush = commit.wrap(d.commit.flush)
    d.outbox.reserve_seq = seqs.wrap(d.outbox.reserve_seq)   # the status's seq, on the loop
    pauses: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses.append(time.perf_counter() - started.pop())
    gc.callbacks.append(on_gc)
    d._flush_state = state.wrap(d._flush_state)
    d._save_snapshots = snaps.wrap(d._save_snapshots)
    lags.clear()
    polls0 = sum(rt.counters["polls"] for rt in d.runtimes.values())
    sent0 = d.publisher.sent if d.publisher else 0
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    polls = sum(rt.counters["polls"] for rt in d.runtimes.values()) - polls0
    sent = (d.publisher.sent if d.publisher else 0) - sent0
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    rss = rss_mb()
    lagger.cancel()
    gc.callbacks.remove(on_gc)
    d.stop_event.set()
    await task
    lag_ms = [x * 1000 for _t, x in lags]
    around = []
    for start, dur in snaps.calls:   # the snapshot save comes right before the state flush
        # samples whose sleep overlaps the flush or the 2 s after it
        near = [x * 1000 for t, x in lags if t <= start + dur + 2.0 and t + 0.005 + x >= start]
        around.append(max(near, default=0.0))
    return {"polls": polls, "sent": sent, "cpu_s": cpu, "wall_s": wall, "rss_mb": rss, "lag_ms": lag_ms,
            "flush_lag_ms": around, "commit": commit, "state": state, "snaps": snaps, "seqs": seqs,
            "gc2_ms": [x * 1000 for x in pauses]}


def with_slow_fsync(ms: float) -> None:
    """Re-run this script with the slow-fsync shim preloaded."""
    if os.environ.get("SLOWSYNC_MS") is not None:
        return
    so = Path(tempfile.mkdtemp(prefix="edgegw-slowsync-")) / "slowsync.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(so), str(HERE / "slowsync.c"), "-ldl"],
                   check=True)
    env = dict(os.environ, SLOWSYNC_MS=str(int(ms)), LD_PRELOAD=str(so))
    # the shim stays loaded until the process ends; its folder is tiny and in /tmp
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--interval", type=float, default=0.5, help="poll interval of every device")
    ap.add_argument("--flush-every", type=float, default=10.0,
                    help="state flush interval for the run (the daemon's is 60 s)")
    ap.add_argument("--fsync-ms", type=float, default=0.0, help="delay every fsync (a slow SD card)")
    ap.add_argument("--no-idle", action="store_true", help="skip the idle measurement")
    args = ap.parse_args()
    if args.fsync_ms:
        with_slow_fsync(args.fsync_ms)
    logsetup.setup("warning")
    work = Path(tempfile.mkdtemp(prefix="edgegw-bench-", dir="/var/tmp"))
    broker = Broker(work).start()
    sim, where = start_sim(work, scenario(args.devices))
    try:
        devices = [{"name": f"fm-{u:03d}", "bus": bus_of(u)[0], "unit": bus_of(u)[1], "model": "turbine-evc",
                    "poll_s": args.interval} for u in range(1, args.devices + 1)]
        busy = gateway_config(work, broker.port, where["buses"], devices, timeout_s=1.0)
        r = asyncio.run(measure(busy, args.seconds, args.flush_every))
        per_poll_ms = r["cpu_s"] / max(1, r["polls"]) * 1000
        lag = r["lag_ms"]
        print(f"devices                 {args.devices} every {args.interval} s; fsync delay {args.fsync_ms} ms")
        print(f"polls                   {r['polls']} in {r['wall_s']:.1f} s = {r['polls'] / r['wall_s']:.0f} polls/s "
              f"({r['polls'] / (r['wall_s'] * args.devices / args.interval) * 100:.1f} % of configured)")
        print(f"CPU per device poll     {per_poll_ms:.3f} ms")
        print(f"CPU per message sent    {r['cpu_s'] / max(1, r['sent']) * 1000:.3f} ms ({r['sent']} sent)")
        print(f"loop lag (5 ms timer)   p50 {pct(lag, 50):.2f} ms, p99 {pct(lag, 99):.2f} ms, "
              f"p99.9 {pct(lag, 99.9):.2f} ms, max {max(lag, default=0):.2f} ms ({len(lag)} samples)")
        fl = r["flush_lag_ms"]
        print(f"state flushes           {len(fl)}; worst loop lag around each: "
              + ", ".join(f"{x:.1f}" for x in fl) + " ms")
        print(f"loop time in commits    {r['commit'].summary()}")
        print(f"loop time, state flush  {r['state'].summary()}")
        print(f"loop time, snapshots    {r['snaps'].summary()}")
        print(f"loop time, status seq   {r['seqs'].summary()}")
        g2 = r["gc2_ms"]
        print(f"full GC pauses (gen 2)  {len(g2)}" + (f", max {max(g2):.1f} ms" if g2 else ""))
        print(f"RSS                     {r['rss_mb']:.1f} MB")

        if not args.no_idle:
            for dev in devices:
                dev["poll_s"] = 3600
            (work / "state").rename(work / "state-busy")
            idle = gateway_config(work, broker.port, where["buses"], devices, timeout_s=1.0)
            r = asyncio.run(measure(idle, args.seconds, None))
            pct_core = r["cpu_s"] / r["wall_s"] * 100
            print(f"idle CPU (nothing due)  {pct_core:.3f} % of a core")
        print(f"max RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")
    finally:
        stop_proc(sim)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
