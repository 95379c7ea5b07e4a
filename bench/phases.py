"""The measurements of bench/run, one function per phase. Each starts what it
needs, measures one window, stops what it started, and returns plain data
(JSON-able) for bench/report.py."""
from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (
    PY,
    PingProbe,
    Procs,
    Subscriber,
    busy_cores,
    cpu_s,
    farm_record,
    find_key,
    gateway_config,
    machine_jiffies,
    mem_mb,
    start_farm,
    start_gateway,
    start_rtu_sim,
    start_wire,
    uplink_bytes,
    wire_stats,
)

from protocols.modbus.plan import plan
from protocols.models import load_models
from simulators.line import LineSpec

MODEL = "turbine-evc"        # written one entry per value; the planner groups the reads
UNITS_PER_ENDPOINT = 50
FAULT_CODE = "GENERAL-FAULT"  # turbine-evc status bit 1, debounce 1
FAULT_HOLD_S = 4.0


@dataclass
class Ctx:
    procs: Procs
    work: Path
    broker: int
    quick: bool
    bits: int = 11               # 8E1: the usual meter setting
    turnaround_s: float = 0.002
    shim: Path | None = None
    device_extra: str = ""       # TOML lines for every gateway [[device]]
    config_extra: str = ""       # TOML appended to every gateway config

    def reads(self, max_registers: int = 125, gap: int = 8) -> list[tuple[str, int, int]]:
        """The gateway's request plan for one device (bus defaults)."""
        m = load_models()[MODEL]
        return [(r.function, r.address, r.count)
                for r in plan(m.fields, max_count=min(max_registers, m.max_registers_per_read), gap=gap)]


def pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p))]


def _reads_arg(reads) -> str:
    return ",".join(f"{f}:{a}:{c}" for f, a, c in reads)


# --------------------------------------------------------------------------- polls seen by the simulators

def poll_analysis(times: dict[str, list[float]], keys: list[str], t0: float, t1: float,
                  interval: float, reads_per_poll: int) -> dict:
    """Polls made in [t0, t1) and the worst lateness, from request arrival
    times per unit. A poll is late by (gap since the unit's previous poll -
    interval); a unit still waiting at t1 counts as late by t1 - last - interval."""
    made = 0
    worst = 0.0
    worst_key = None
    everything: list[float] = []
    for k in keys:
        ts = times.get(k, [])[::reads_per_poll]
        inside = [t for t in ts if t0 <= t < t1]
        made += len(inside)
        everything.extend(inside)
        before = [t for t in ts if t < t0]
        prev = before[-1] if before else t0 - interval
        for t in inside + [t1]:
            late = t - prev - interval
            if late > worst:
                worst, worst_key = late, k
            prev = t
    expected = len(keys) * (t1 - t0) / interval
    everything.sort()
    gaps = [b - a for a, b in zip(everything, everything[1:])]
    # the longest silence across every endpoint, per second: a stalled
    # gateway leaves all of them quiet at once
    series: dict[int, float] = {}
    for a, b in zip(everything, everything[1:]):
        sec = int(a - t0)
        series[sec] = max(series.get(sec, 0.0), b - a)
    return {"polls": made, "expected": expected, "made_pct": 100.0 * made / expected if expected else None,
            "worst_late_s": worst, "worst_late_unit": worst_key,
            "max_silence_s": max(gaps) if gaps else None,
            "silence_series": sorted(series.items())}


def fault_latency(flips: list, events: list, name_of: dict[str, str]) -> dict:
    lat = []
    missing = 0
    for key, on, t in flips:
        dev = name_of.get(key)
        state = "raised" if on else "cleared"
        hit = [te for te, d, code, s in events if d == dev and code == FAULT_CODE and s == state and te >= t]
        if hit:
            lat.append(min(hit) - t)
        else:
            missing += 1
    return {"edges": len(flips), "missing": missing, "p50_s": pct(lat, 0.5), "p99_s": pct(lat, 0.99),
            "max_s": max(lat) if lat else None}


def lag_from_status(status: list[tuple[float, dict]]) -> tuple[dict | None, list]:
    """loop_lag_ms from the gateway's status topic: the last report made while
    it ran (else the one it sends when stopping), and every report over time."""
    series = []
    chosen = None
    for t, body in status:
        lag = find_key(body, "loop_lag_ms")
        if isinstance(lag, dict):
            series.append((t, lag))
            if body.get("online") is not False or chosen is None:
                chosen = lag
    return chosen, series


# --------------------------------------------------------------------------- Modbus TCP

def tcp(ctx: Ctx, label: str, who: str, devices: int, *, interval: float = 1.0, warm: float,
        window: float, slow_ms: float = 0, flips: bool = True, probe: bool = True) -> dict:
    procs, work = ctx.procs, ctx.work
    reads = ctx.reads()
    ports = max(1, devices // UNITS_PER_ENDPOINT)
    per = devices // ports
    t_start = time.monotonic() + warm + (10 if devices >= 1000 else 3 if ctx.quick else 5)
    keys = [f"{e}:{u}" for e in range(ports) for u in range(1, per + 1)]
    name_of = {k: "ep{:02d}-u{:03d}".format(*map(int, k.split(":"))) for k in keys}
    flip_file = None
    if who == "gateway" and flips:
        # one raise and one clear per chosen unit (flap suppression allows 3
        # cycles an hour), spread over the window
        n = max(2, min(100, len(keys), int(window)))
        hold = min(FAULT_HOLD_S, max(1.5, window / 4))
        span = max(0.5, window - hold - 2 * interval - 1)
        plan_ = []
        rng = random.Random(13)
        for i in range(n):
            k = keys[(i * len(keys)) // n]
            # at a random phase of the unit's poll cycle, not in step with it
            t = t_start + 0.5 + span * i / n + rng.random() * interval
            plan_ += [(t, k, True), (t + hold, k, False)]
        flip_file = work / f"{label}-flips.json"
        flip_file.write_text(json.dumps(plan_))
    out = work / f"{label}-farm.json"
    farm, fports = start_farm(procs, f"{label}-farm", ports, per, out, flip_file)
    res: dict = {"label": label, "who": who, "devices": ports * per, "endpoints": ports,
                 "interval_s": interval, "reads": reads, "window_s": window, "slow_ms": slow_ms}
    sub = probe_t = None
    proc = None
    try:
        if who == "bare":
            eps = ",".join(f"127.0.0.1:{p}" for p in fports)
            proc = procs.start(f"{label}-bare", [PY, "bench/bare.py", "--tcp", eps, "--units", str(per),
                                                 "--reads", _reads_arg(reads), "--interval", str(interval)],
                               stdout=subprocess.PIPE)
        else:
            gw = label.replace("_", "-")
            state = work / gw / "state"
            buses = [{"name": f"ep{e:02d}", "port": f"tcp://127.0.0.1:{p}"} for e, p in enumerate(fports)]
            devs = [{"name": name_of[k], "bus": "ep{:02d}".format(int(k.split(':')[0])),
                     "unit": int(k.split(":")[1]), "model": MODEL, "poll_interval_s": interval} for k in keys]
            cfg = gateway_config(work, gw, ctx.broker, buses, devs, state, ctx.device_extra, ctx.config_extra)
            sub = Subscriber(ctx.broker, gw)
            env = {"LD_PRELOAD": str(ctx.shim), "SLOWFSYNC_MS": str(slow_ms)} if slow_ms else None
            proc = start_gateway(procs, cfg, f"{label}-gateway", env)
            if probe:
                probe_t = PingProbe(state / "control.sock", 0.1)
                probe_t.start()
        time.sleep(max(0.0, t_start - time.monotonic()))
        if proc.poll() is not None:
            raise RuntimeError(f"{label}: {who} exited early (see {label}-{who}.log)")
        t0, c0, m0 = time.monotonic(), cpu_s(proc.pid), machine_jiffies()
        time.sleep(window)
        t1, c1, m1 = time.monotonic(), cpu_s(proc.pid), machine_jiffies()
        res["machine_busy_cores"] = busy_cores(m0, m1)
        res["mem_mb"] = mem_mb(proc.pid)
        if probe_t is not None:
            probe_t.stop()
        rec = farm_record(farm, out)
        procs.stop(proc, timeout=30)
        if sub is not None:
            time.sleep(1.0)       # the status sent on stopping
    finally:
        if probe_t is not None:
            probe_t.stop()
        if sub is not None:
            sub.close()
        procs.stop(proc)
        procs.stop(farm)
    polls = poll_analysis(rec["times"], keys, t0, t1, interval, len(reads))
    res.update(polls=polls, cpu_s=c1 - c0, wall_s=t1 - t0,
               cpu_per_poll_ms=(c1 - c0) / polls["polls"] * 1000 if polls["polls"] else None,
               cpu_pct=100.0 * (c1 - c0) / (t1 - t0))
    if sub is not None:
        res["uplink"] = uplink_bytes(sub.window(t0, t1))
        # only edges the gateway had a full interval (and a little) to see in the window
        seen = [f for f in rec["flips"] if f[2] < t1 - interval - 0.3]
        res["faults"] = fault_latency(seen, sub.events, name_of) if flips else None
        res["loop_lag_ms"], lag_series = lag_from_status(sub.status)
        res["loop_lag_series"] = [(t - t0, v) for t, v in lag_series]
    if probe_t is not None:
        rtts = [r for t, r in probe_t.samples if t0 <= t < t1]
        res["ping_ms"] = {"samples": len(rtts), "failures": probe_t.failures,
                          **{k: (v * 1000 if v is not None else None) for k, v in
                             (("p50", pct(rtts, 0.5)), ("p99", pct(rtts, 0.99)),
                              ("p999", pct(rtts, 0.999)), ("max", max(rtts) if rtts else None))}}
        res["ping_series"] = [(round(t - t0, 3), round(r * 1000, 3)) for t, r in probe_t.samples if t0 <= t < t1]
    return res


# --------------------------------------------------------------------------- RTU behind the wire emulator

def rtu(ctx: Ctx, label: str, who: str, baud: int, devices: int, *, warm: float, window: float) -> dict:
    procs, work = ctx.procs, ctx.work
    reads = ctx.reads()
    spec = LineSpec(baud, ctx.bits, ctx.turnaround_s)
    stats = work / f"{label}-wire.json"
    wire, where = start_wire(procs, f"{label}-wire", baud, ctx.bits, ctx.turnaround_s, stats)
    sim = proc = None
    res: dict = {"label": label, "who": who, "baud": baud, "bits": ctx.bits, "devices": devices,
                 "emulator_sched": where.get("sched"),
                 "turnaround_s": ctx.turnaround_s, "reads": reads, "window_s": window}
    try:
        sim = start_rtu_sim(procs, f"{label}-sim", where["slave"], baud, devices)
        if who == "bare":
            proc = procs.start(f"{label}-bare", [PY, "bench/bare.py", "--serial", where["master"],
                                                 "--baud", str(baud), "--units", str(devices),
                                                 "--reads", _reads_arg(reads), "--interval", "0"],
                               stdout=subprocess.PIPE)
        else:
            gw = label.replace("_", "-")
            cfg = gateway_config(work, gw, ctx.broker, [{"name": "rtu", "port": where["master"], "baudrate": baud}],
                                 [{"name": f"fm-{u:02d}", "bus": "rtu", "unit": u, "model": MODEL,
                                   "poll_interval_s": 0.1} for u in range(1, devices + 1)],
                                 work / gw / "state", ctx.device_extra, ctx.config_extra)
            proc = start_gateway(procs, cfg, f"{label}-gateway")
        time.sleep(warm)
        if proc.poll() is not None:
            raise RuntimeError(f"{label}: {who} exited early")
        wire.send_signal(signal.SIGUSR1)     # request lateness: this window only
        s0, c0, m0 = wire_stats(stats), cpu_s(proc.pid), machine_jiffies()
        time.sleep(window)
        s1, c1, m1 = wire_stats(stats), cpu_s(proc.pid), machine_jiffies()
        res["machine_busy_cores"] = busy_cores(m0, m1)
    finally:
        procs.stop(proc, timeout=30)
        procs.stop(sim)
        procs.stop(wire)
    dt = s1["t"] - s0["t"]
    # Cycle time from each unit's request start times (as exact as the
    # emulator's clock), not from window edges (off by up to one poll).
    n_req = span = 0.0
    for u in map(str, range(1, devices + 1)):
        k = s1["requests_by_unit"].get(u, 0) - s0["requests_by_unit"].get(u, 0)
        if k > 0 and u in s0["last_request_by_unit"]:
            n_req += k
            span += s1["last_request_by_unit"][u] - s0["last_request_by_unit"][u]
    polls = n_req / len(reads)
    own = spec.plan_s([c for _f, _a, c in reads]) * devices
    cycle = span / n_req * len(reads) if n_req else None
    res.update(polls=polls, wall_s=dt, cpu_s=c1 - c0,
               cpu_per_poll_ms=(c1 - c0) / polls * 1000 if polls else None,
               cycle_s=cycle, own_plan_s=own, wire_ratio=cycle / own if cycle else None,
               # the same without the time the free line waited for the simulated
               # meters (a slow simulator is not the gateway's fault)
               wire_ratio_master=(cycle * (1 - (s1["slave_wait_s"] - s0["slave_wait_s"]) / dt) / own
                                  if cycle else None),
               utilisation=(s1["busy_s"] - s0["busy_s"]) / dt,
               wire_limited_share=(s1["busy_s"] - s0["busy_s"] + s1["gap_s"] - s0["gap_s"]) / dt,
               master_wait_share=(s1["master_wait_s"] - s0["master_wait_s"]) / dt,
               slave_wait_share=(s1["slave_wait_s"] - s0["slave_wait_s"]) / dt,
               overlaps=s1["overlaps"] - s0["overlaps"],
               frame_end_late_p99_ms=(s1["frame_end_late_p99_s"] or 0) * 1000,
               frame_end_late_max_ms=(s1["frame_end_late_max_s"] or 0) * 1000,
               # each request's arrival at the line less the earliest it could
               # start (> 0: the free line waited), over the window
               request_late_ms={k: (s1.get(f"request_late_{k}_s") or 0) * 1000
                                for k in ("p50", "p90", "p99", "max")},
               request_late_share=s1.get("request_late_share"))
    return res


# --------------------------------------------------------------------------- emulator accuracy

def wire_accuracy(ctx: Ctx, baud: int, seconds: float) -> dict:
    """A master and a slave that answer instantly, N exchanges of a 28-register
    read through the emulator: elapsed time against the theoretical wire time."""
    procs = ctx.procs
    label = f"acc-{baud}"
    stats = ctx.work / f"{label}.json"
    spec = LineSpec(baud, ctx.bits, ctx.turnaround_s)
    wire, where = start_wire(procs, label, baud, ctx.bits, ctx.turnaround_s, stats)
    n = max(10, int(seconds / spec.read_s(28)))
    try:
        r = subprocess.run([PY, "bench/wireacc.py", where["master"], where["slave"], str(n)],
                           cwd=str(Path(__file__).resolve().parent.parent), capture_output=True,
                           text=True, timeout=60 + 2 * seconds)
        if r.returncode:
            raise RuntimeError(f"{label}: {r.stderr.strip()[-300:]}")
        probe = json.loads(r.stdout.strip().splitlines()[-1])
        elapsed = probe["elapsed_s"]
        time.sleep(0.6)
        st = wire_stats(stats)
    finally:
        procs.stop(wire)
    # the last exchange's closing silence is not waited for by anyone
    theory = n * spec.read_s(28) - spec.t35_s
    return {"baud": baud, "bits": ctx.bits, "emulator_sched": where.get("sched"),
            "probe_sched": probe["sched"], "exchanges": n, "elapsed_s": elapsed, "theory_s": theory,
            "ratio": elapsed / theory, "error_per_exchange_us": (elapsed - theory) / n * 1e6,
            "frame_end_late_p50_us": (st["frame_end_late_p50_s"] or 0) * 1e6,
            "frame_end_late_p99_us": (st["frame_end_late_p99_s"] or 0) * 1e6,
            "frame_end_late_max_us": (st["frame_end_late_max_s"] or 0) * 1e6}
