"""Wall-clock jumps of the gateway process (libfaketime), with the promise
counted (promise.py).

One gateway life boots with its wall clock at 1970-01-01 (a box without an
RTC before NTP), is synchronised to the real time, is set back one day, then
a year ahead. The uplink to Mosquitto is down across every jump, so messages
stored before a jump are still queued after it. Three turbine meters on a
pty (the simulator's relay counting every answer) are polled every 0.5 s.

libfaketime (Debian's `faketime` package) is preloaded into the gateway only,
with its offset in a file the test rewrites while the process runs
(FAKETIME_TIMESTAMP_FILE). FAKETIME_DONT_FAKE_MONOTONIC=1: setting the wall
clock on Linux (settimeofday, an NTP step) never moves CLOCK_MONOTONIC, but
libfaketime 0.9.10 by default shifts CLOCK_MONOTONIC by the same offset (a
process under "-1d" reads a monotonic clock of about 1.8e9 s), which no real
clock step does. (With it set, 0.9.10 still shifts the absolute monotonic
deadlines of clock_nanosleep, so `time.sleep` fails with EINVAL; the gateway
never calls it, and if it did the log would show the traceback.)

Counted, beyond the promise:
  - no poll missed or doubled: the simulator answered each meter exactly
    (reads per poll) x (its committed readings), and between two readings of
    a meter the wall clock moved one poll interval, except at the three
    jumps, where it moved by the jump;
  - nothing purged: no budget drop, every stored message delivered, and the
    status never reports a backlog older than the real time it waited
    (the outbox ages messages on its store clock, which is monotonic);
  - `ts_synced` honest: on every payload it is what the kernel says of the
    clock (adjtimex, which libfaketime does not fake), whatever the process reads.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime

import pytest

from gateway.poll.runtime import make_runtime
from gateway.site import clock
from gateway.site.config import load_config
from protocols.models import load_models
from tests.edges.promise import (Figures, FlakyUplink, Watch, account, count_wrong, duration, pinned_meter,
                                 tear_down, tracebacks)
from tests.integration.test_lying_slave import injected
from tests.support import ROOT, Broker, Subscriber, gateway_config, start_gateway, start_sim, stop_proc

pytestmark = [pytest.mark.integration, pytest.mark.edges]

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
NAMES = ("fm-1", "fm-2", "fm-3")
INTERVAL = 0.5
# (offset written to the file, what it stands for)
PHASES = (("@1970-01-01 00:00:00", "boot at 1970, not synchronised"), ("+0", "NTP synchronised"),
          ("-1d", "set back a day"), ("+365d", "a year ahead"))


def scenario() -> str:
    out = '[simulator]\nseed = 3\ntick_s = 0.1\n\n[[bus]]\nname = "rs485-1"\nkind = "pty"\nlink = "ttyCLOCK"\n'
    for u, name in enumerate(NAMES, start=1):
        # an empty noisy line: every answer passes, and is counted
        out += (f'\n[[device]]\nbus = "rs485-1"\nunit = {u}\nmodel = "turbine-evc"\nname = "{name}"\n'
                f'noise = {{}}\n{pinned_meter()}\n')
    return out


def field_status(cfg, held_s: float) -> dict:
    """`edgegw status --json` (a process without libfaketime) while the link holds."""
    out = subprocess.run([sys.executable, "-m", "gateway", "status", "--config", str(cfg), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=20)
    body = json.loads(out.stdout)
    return {"held_s": round(held_s, 2), **{k: body["outbox"][k] for k in ("backlog_msgs", "oldest_age_s", "dropped")},
            "clock_synced": body["clock"]["synced"]}


NEAR_JUMP = 10      # readings (5 s) either side of a jump


def odd_steps(steps: list[float]) -> list[int]:
    """Indexes of the steps between consecutive readings of one meter that
    are not one poll interval (jumps, over an hour, aside)."""
    return [i for i, d in enumerate(steps) if abs(d) <= 3600 and abs(d - INTERVAL) > 0.3]


def late_at_the_jump(steps: list[float], i: int, at_jump: list[int]) -> bool:
    """The step that holds a jump hides how late the poll at the jump was
    (a loaded machine: the test saw one 0.44 s late); the next poll, on its
    own phase, then comes sooner than one interval. That is a late poll, not
    a doubled one (a second poll at once would come within milliseconds, and
    the counts below would show it) nor a missed one (a step over one
    interval is never excused)."""
    return i - 1 in at_jump and 0.03 < steps[i] < INTERVAL + 0.3


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@pytest.mark.skipif(not os.path.exists(LIBFAKETIME), reason="libfaketime is not installed (apt-get install faketime)")
def test_wall_clock_jumps_miss_no_poll_purge_nothing_and_flag_time_honestly(tmp_path):
    phase_s = duration(24.0) / len(PHASES)
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    uplink = FlakyUplink(broker.port)
    sim, where = start_sim(tmp_path, scenario())
    devices = [{"name": n, "bus": "rs485-1", "unit": u, "model": "turbine-evc", "poll_s": INTERVAL}
               for u, n in enumerate(NAMES, start=1)]
    cfg = gateway_config(tmp_path, uplink.port, where["buses"], devices, timeout_s=0.2,
                         extra="[outbox]\nmax_age_days = 1\ninflight = 1\n")
    offset = tmp_path / "faketime"
    offset.write_text(PHASES[0][0] + "\n")
    env = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": str(offset),
           "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    fig = Figures("wall-clock jumps (1970, sync, -1 day, +1 year)")
    gw = start_gateway(cfg, env=env)
    watch = Watch(gw)
    t0 = time.monotonic()
    down_s, seen = [], []
    try:
        sub.wait_for(lambda s: all(s.select("/telemetry", n) for n in NAMES), 30, "telemetry from all meters")
        watch.start()
        for value, _what in PHASES[1:]:
            time.sleep(max(1.0, phase_s - 3.0))
            uplink.held.set()           # stored before the jump, sent after it
            t_down = time.monotonic()
            time.sleep(0.8)
            offset.write_text(value + "\n")
            time.sleep(1.2)             # libfaketime reads the file at most once a second
            seen.append(field_status(cfg, time.monotonic() - t_down))
            uplink.held.clear()
            down_s.append(time.monotonic() - t_down)
        time.sleep(phase_s)
        watch.end()
        fig.crashes = 0 if gw.poll() is None else 1
        assert stop_proc(gw) == 0, "the gateway did not stop cleanly"
        stop_proc(sim)
        watch.into(fig)
        fig.seconds = round(time.monotonic() - t0, 1)
        answers = injected((tmp_path / "sim.log").read_text())
    finally:
        tear_down(gw, sim, sub, broker, uplink)

    led = account(fig, sub, "edgegw/t1/status", tmp_path / "state")
    fig.tracebacks = tracebacks(tmp_path / "gateway.log")
    fig.wrong = count_wrong(led, fig.seconds)
    site = load_config(tmp_path / "edgegw.toml")
    models = load_models()
    reads = {d.name: len(make_runtime(d, models[d.model], site.buses[0]).reads) for d in site.devices}

    # -- polls: none missed, none doubled -------------------------------------
    jumps, counts, slots, near, far = {}, {}, {}, {}, {}
    late = max([b.get("buses", {}).get("rs485-1", {}).get("timeouts", 0) for b in sub.select("/t1/status")] + [0])
    for name in NAMES:
        tel = [b for t, b in sorted(led.by_seq.items()) if b[0].endswith(f"/{name}/telemetry")]
        ts = [epoch(b["ts"]) for _t, b in tel]
        counts[name] = len(ts)
        steps = [b - a for a, b in zip(ts, ts[1:], strict=False)]
        at_jump = [i for i, d in enumerate(steps) if abs(d) > 3600]
        jumps[name] = [round(steps[i]) for i in at_jump]
        # the time the meter was polled over, the jumps taken out
        span = sum(INTERVAL if abs(d) > 3600 else d for d in steps)
        slots[name] = round(span / INTERVAL) + 1
        near[name] = [round(steps[i], 2) for i in odd_steps(steps) if any(abs(i - j) <= NEAR_JUMP for j in at_jump)
                      and not late_at_the_jump(steps, i, at_jump)]
        far[name] = [round(steps[i], 2) for i in odd_steps(steps) if not any(abs(i - j) <= NEAR_JUMP for j in at_jump)]
        # every answer the simulator gave this meter went into a committed reading
        # (the poll in progress at the stop was answered, never committed)
        assert set(answers[name]) == {"ok"}, answers[name]
        # An answer that came after the bus gave up on it (timeout_s is 0.2 s:
        # a loaded machine makes a few) is asked again: one reading, two
        # answers. The bus counts those timeouts; nothing else may differ.
        assert reads[name] * len(ts) <= answers[name]["ok"] <= reads[name] * (len(ts) + 1) + late, \
            (name, answers[name], reads[name], len(ts), late)
    # -- nothing purged, store clock honest ------------------------------------
    # -- ts_synced: what the kernel says, not what the process reads -----------
    kernel_synced = clock._probe()[0]
    flags = {b.get("ts_synced") for _t, b in led.by_seq.values() if "ts_synced" in b}
    years = sorted({datetime.fromisoformat(b["ts"].replace("Z", "+00:00")).year
                    for _t, b in led.by_seq.values() if "ts" in b})
    fig.notes.update(readings=counts, bus_timeouts=late, poll_slots=slots, reads_per_poll=reads, jumps_s=jumps[NAMES[0]],
                     odd_steps_near_jumps=near, odd_steps_elsewhere=far,
                     held=seen, uplink_held_s=[round(d, 1) for d in down_s],
                     ts_years=years, ts_synced=sorted(flags), kernel_synced=kernel_synced)
    fig.report()

    for name in NAMES:
        assert len(jumps[name]) == 3, (name, jumps[name])
        assert jumps[name][1] < -80000 and 365 * 86400 < jumps[name][2] < 367 * 86400, jumps[name]
        # At the jumps: one reading every interval, exactly as before and after.
        assert near[name] == [], f"{name}: polls disturbed at a jump (steps, s): {near[name]}"
        # Over the whole run: never more readings than poll slots (nothing
        # doubled); fewer only by what a stalled event loop cost (late or
        # lost slots away from the jumps, with loop_lag_max_ms a figure of
        # its own: CPU or disk contention, not the wall clock).
        assert counts[name] <= slots[name] + 1, (name, counts[name], slots[name])
        lost = slots[name] - counts[name]
        assert lost <= 1 or (lost <= 0.01 * slots[name] and (fig.notes.get("loop_lag_max_ms") or 0) > 300), \
            (name, counts[name], slots[name], far[name], fig.notes.get("loop_lag_max_ms"))
        elapsed_polls = (fig.seconds - 1.0) / INTERVAL
        assert counts[name] >= 0.85 * elapsed_polls, (name, counts[name], elapsed_polls)
    assert 1970 in years and min(years) == 1970 and max(years) >= 2026, years
    for s in seen:
        # a backlog queued across the jump, aged by the time it really waited
        assert s["backlog_msgs"] >= 3 and not any(s["dropped"].values()), s
        assert s["oldest_age_s"] <= s["held_s"] + 1.0, f"the store clock aged a backlog by the wall clock: {s}"
        assert s["clock_synced"] == clock._probe()[0], s
    assert flags == {kernel_synced}, f"ts_synced {flags}, the kernel says {kernel_synced}"
    fig.check()
