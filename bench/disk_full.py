"""The full-disk case of tests/integration/test_disk_full.py, longer and
repeated (a script that prints figures, not a test; needs root for the tmpfs).

The real gateway, its state folder on a small tmpfs, N simulated meters
polled every 0.2 s whose sensor flips every few seconds; then, CYCLES times:
the uplink is cut until the outbox reports disk_full, the last free bytes
are taken by another file, the uplink stays down HOLD seconds more, then it
comes back. Nothing is ever deleted by hand. Prints, per cycle, how long the
fill and the drain took; at the end the fault edges produced (from the log)
against those delivered, duplicates, seq holes, tracebacks.

Usage: python bench/disk_full.py [--cycles 3] [--hold 60] [--devices 10] [--size 2m]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tests.integration.test_disk_full as case  # noqa: E402
from tests.integration.test_disk_full import Tmpfs, edges, outbox_health, scenario, seq_holes, stop_all  # noqa: E402
from tests.support import (Broker, Subscriber, Uplink, free_port, gateway_config, start_gateway,  # noqa: E402
                           start_sim, stop_proc, wait_until)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--hold", type=float, default=60.0, help="seconds the uplink stays down once full")
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--size", default="2m", help="tmpfs size of the state folder")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs) for a look")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="edgegw-diskfull-"))
    fs = Tmpfs(work / "state", args.size)
    if not fs.mounted:
        print(f"cannot mount a tmpfs: {fs.why}")
        return 2
    broker = sub = uplink = sim = gw = None
    t0 = time.monotonic()
    try:
        broker = Broker(work).start()
        sub = Subscriber(broker.port)
        uplink = Uplink(broker.port)
        case.TOGGLE_UNTIL = 36_000.0   # the sensors flip for the whole run
        sim, where = start_sim(work, scenario(free_port()))
        devices = [{"name": f"fm-{u:02d}", "bus": "tcp-1", "unit": u, "model": "turbine-evc", "poll_s": 0.2,
                    "params": {"flap_count": 1000}} for u in range(1, min(args.devices, 10) + 1)]
        cfg = gateway_config(work, uplink.port, where["buses"], devices, timeout_s=0.5)
        gw = start_gateway(cfg)
        wait_until(lambda: sub.select("/telemetry"), 30, "telemetry")
        print(f"{'cycle':>5} {'fill s':>7} {'drain s':>8}  health after")
        for c in range(1, args.cycles + 1):
            uplink.down()
            t = time.monotonic()
            wait_until(lambda: outbox_health(cfg)[0] == "disk_full", 600, "disk_full", 1.0)
            fill = time.monotonic() - t
            fs.squeeze()
            time.sleep(args.hold)
            uplink.up()
            t = time.monotonic()
            wait_until(lambda: outbox_health(cfg) == ("ok", 0) or (outbox_health(cfg)[0] == "ok"
                       and outbox_health(cfg)[1] < 50), 600, "drain", 1.0)
            print(f"{c:>5} {fill:>7.1f} {time.monotonic() - t:>8.1f}  {outbox_health(cfg)}", flush=True)
        stop_proc(sim)     # no new edges (but the meters going stale)
        sim = None
        time.sleep(15)
        assert stop_proc(gw) == 0
        gw = None
    finally:
        stop_all(gw, sim, sub, uplink, broker, fs)
    log, produced, events = edges(work, sub)
    by_seq = {b["seq"]: b for b in events}
    holes = len(seq_holes(sub))
    print(f"run time                {time.monotonic() - t0:.0f} s" + (f", work folder {work}" if args.keep else ""))
    print(f"fault edges produced    {len(produced)}")
    print(f"fault edges delivered   {len(by_seq)} distinct, {len(events) - len(by_seq)} duplicates (same seq)")
    print(f"seq holes               {holes}")
    print(f"tracebacks in the log   {log.count('Traceback')}")
    print(f"state.json warnings     {sum(1 for ln in log.splitlines() if 'state.json' in ln)}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if len(produced) == len(by_seq) and not holes else 1


if __name__ == "__main__":
    sys.exit(main())
