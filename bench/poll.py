"""Poll-path benchmark: prints figures and ratios against the design targets.

Runs the simulator (a separate process, Modbus TCP on 127.0.0.1) with N
turbine meters, a local Mosquitto, and the real Daemon in this process, then
measures:

- CPU per device poll (process CPU time of the gateway / polls), including
  decode, interpretation, the outbox commit and publishing. Target < 0.5 ms.
- polls per second on the bus (TCP: no wire time, so this is the gateway's
  own ceiling, not an RS-485 figure).
- RSS with N devices. Target < 40 MB at 100 devices.
- CPU when nothing is due (every device on a 1 h interval). Target < 0.5 %.

Usage: python bench/poll.py [--devices 100] [--seconds 20]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.daemon import Daemon  # noqa: E402
from tests.support import Broker, free_port, gateway_config, start_sim, stop_proc  # noqa: E402

from gateway.site import logsetup
from gateway.site.config import load_config


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def scenario(n: int, port: int) -> str:
    out = ["[simulator]", "tick_s = 0.5", "", "[[bus]]", 'name = "tcp-1"', 'kind = "tcp"',
           f'listen = "127.0.0.1:{port}"', ""]
    for u in range(1, n + 1):
        out += ["[[device]]", 'bus = "tcp-1"', f"unit = {u}", 'model = "turbine-evc"', f'name = "fm-{u:03d}"',
                "pin = { flow_m3h = 40.0, temperature_C = 15.0, pressure_kPa = 300.0, battery_V = 3.6 }", ""]
    return "\n".join(out)


async def measure(cfg_path: Path, seconds: float) -> dict:
    cfg = load_config(cfg_path)
    d = Daemon(cfg)
    task = asyncio.create_task(d.run())
    await asyncio.sleep(3)  # connect, first polls, imports warm
    polls0 = sum(rt.counters["polls"] for rt in d.runtimes.values())
    cpu0, t0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    polls = sum(rt.counters["polls"] for rt in d.runtimes.values()) - polls0
    cpu, wall = time.process_time() - cpu0, time.monotonic() - t0
    rss = rss_mb()
    d.stop_event.set()
    await task
    return {"polls": polls, "cpu_s": cpu, "wall_s": wall, "rss_mb": rss}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    logsetup.setup("warning")
    work = Path(tempfile.mkdtemp(prefix="edgegw-bench-"))
    broker = Broker(work).start()
    port = free_port()
    sim, where = start_sim(work, scenario(args.devices, port))
    try:
        devices = [{"name": f"fm-{u:03d}", "bus": "tcp-1", "unit": u, "model": "turbine-evc",
                    "poll_s": 0.5} for u in range(1, args.devices + 1)]
        busy = gateway_config(work, broker.port, where["buses"], devices, timeout_s=1.0)
        r = asyncio.run(measure(busy, args.seconds))
        per_poll_ms = r["cpu_s"] / max(1, r["polls"]) * 1000
        print(f"devices                 {args.devices}")
        print(f"polls                   {r['polls']} in {r['wall_s']:.1f} s = {r['polls'] / r['wall_s']:.0f} polls/s (TCP loopback, no wire time)")
        print(f"CPU per device poll     {per_poll_ms:.3f} ms   target < 0.5 ms   ratio {per_poll_ms / 0.5:.2f}")
        print(f"RSS                     {r['rss_mb']:.1f} MB   target < 40 MB at 100 devices   ratio {r['rss_mb'] / 40:.2f}")

        for dev in devices:
            dev["poll_s"] = 3600
        (work / "state").rename(work / "state-busy")
        idle = gateway_config(work, broker.port, where["buses"], devices, timeout_s=1.0)
        r = asyncio.run(measure(idle, args.seconds))
        pct = r["cpu_s"] / r["wall_s"] * 100
        print(f"idle CPU (nothing due)  {pct:.3f} % of a core   target < 0.5 %   ratio {pct / 0.5:.2f}")
        print(f"max RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} MB")
    finally:
        stop_proc(sim)
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
