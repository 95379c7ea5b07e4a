"""bench/run's report: a Markdown table of figures, each beside the bare
pymodbus loop of the same run, and PNG plots (matplotlib, the `bench` extra)."""
from __future__ import annotations

from pathlib import Path


def _f(v, fmt: str = "{:.3f}", unit: str = "") -> str:
    if v is None:
        return "n/a"
    return fmt.format(v) + unit


def _ratio(a, b) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def _verdict(ok) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def _lag(d: dict | None) -> str:
    if not d:
        return "n/a"
    return " / ".join(_f(d.get(k), "{:.1f}") for k in ("p50", "p99", "p999", "max")) + " ms"


def _pooled(R: dict, key: str) -> float | None:
    """CPU per poll (ms) over a phase and its repeat (`key` + "_b"), windows pooled."""
    runs = [R[k] for k in (key, key + "_b") if R.get(k) and R[k].get("polls")]
    polls = sum(r["polls"] for r in runs)
    return sum(r["cpu_s"] for r in runs) / polls * 1000 if polls else None


def rows(R: dict) -> list[tuple[str, str, str, str, str, str]]:
    """(figure, edgegw, bare pymodbus loop, ratio, target, verdict)"""
    out = []

    def g(key, *path):
        d = R.get(key)
        for p in path:
            if d is None:
                return None
            d = d.get(p) if isinstance(d, dict) else None
        return d

    for n in (100, 500, 1000):
        gw, bare = g(f"tcp{n}_gateway", "cpu_per_poll_ms"), g(f"tcp{n}_bare", "cpu_per_poll_ms")
        if gw is None and bare is None:
            continue
        ok = None if gw is None or bare is None or n == 1000 else gw / bare <= 3
        out.append((f"CPU per device poll, Modbus TCP, {n} devices at 1 s", _f(gw, "{:.3f}", " ms"),
                    _f(bare, "{:.3f}", " ms"), _ratio(gw, bare), "<= 3x" if n != 1000 else "(info)",
                    _verdict(ok)))
    gw, bare = g("tcp500_slow_gateway", "cpu_per_poll_ms"), g("tcp500_bare", "cpu_per_poll_ms")
    if gw is not None:
        out.append((f"CPU per device poll, TCP 500 devices, slow disk ({R['meta']['slow_ms']} ms per sync)",
                    _f(gw, "{:.3f}", " ms"), _f(bare, "{:.3f}", " ms"), _ratio(gw, bare), "<= 3x",
                    _verdict(gw / bare <= 3 if bare else None)))
    gw, bare = _pooled(R, "rtu9600_gateway"), _pooled(R, "rtu9600_bare")
    if gw is not None or bare is not None:
        each = [_ratio(g(f"rtu9600_gateway{s}", "cpu_per_poll_ms"), g(f"rtu9600_bare{s}", "cpu_per_poll_ms"))
                for s in ("", "_b") if f"rtu9600_gateway{s}" in R]
        ratio = _ratio(gw, bare) + (f" (pairs: {', '.join(each)})" if len(each) > 1 else "")
        out.append(("CPU per device poll, RTU 9600 8E1, 10 devices, bus saturated", _f(gw, "{:.3f}", " ms"),
                    _f(bare, "{:.3f}", " ms"), ratio, "<= 1.1x",
                    _verdict(gw / bare <= 1.1 if gw and bare else None)))
    for key, bare_key, what in (("tcp500_gateway", "tcp500_bare", "500 devices"),
                                ("tcp1000_gateway", "tcp1000_bare", "1,000 devices"),
                                ("tcp500_slow_gateway", "tcp500_bare", "500 devices, slow disk")):
        if key not in R:
            continue
        m, mb = g(key, "polls", "made_pct"), g(bare_key, "polls", "made_pct")
        out.append((f"Polls made, {what} at 1 s", _f(m, "{:.2f}", " %"), _f(mb, "{:.2f}", " %"),
                    _ratio(m, mb), ">= 99 %", _verdict(m >= 99 if m is not None else None)))
        late, lb = g(key, "polls", "worst_late_s"), g(bare_key, "polls", "worst_late_s")
        out.append((f"Worst lateness of a poll, {what}", _f(late, "{:.3f}", " s"), _f(lb, "{:.3f}", " s"),
                    _ratio(late, lb), "<= 1 interval (1 s)", _verdict(late <= 1.0 if late is not None else None)))
        sil, sb = g(key, "polls", "max_silence_s"), g(bare_key, "polls", "max_silence_s")
        out.append((f"Longest silence on all endpoints at once, {what}", _f(sil, "{:.3f}", " s"),
                    _f(sb, "{:.3f}", " s"), _ratio(sil, sb), "(info: a stall)", "n/a"))
    for key, what in (("tcp500_gateway", "500 devices"), ("tcp1000_gateway", "1,000 devices"),
                      ("tcp500_slow_gateway", "500 devices, slow disk")):
        if key not in R:
            continue
        lag = g(key, "loop_lag_ms")
        p999 = lag.get("p999") if isinstance(lag, dict) else None
        out.append((f"Event-loop lag p50 / p99 / p99.9 / max (status topic), {what}", _lag(lag), "n/a", "n/a",
                    "p99.9 <= 10 ms", _verdict(p999 <= 10 if p999 is not None else None)))
        ping = g(key, "ping_ms")
        out.append((f"Control-socket ping round trip p50 / p99 / p99.9 / max (outside view of lag), {what}",
                    _lag(ping), "n/a", "n/a", "(info)", "n/a"))
    idle = g("idle100_gateway", "cpu_pct")
    if idle is not None:
        out.append(("Idle CPU, 100 devices configured, nothing due", _f(idle, "{:.3f}", " % of a core"),
                    _f(g("idle100_bare", "cpu_pct"), "{:.3f}", " % of a core"), "n/a", "<= 0.2 %",
                    _verdict(idle <= 0.2)))
    rss, hwm = g("tcp500_gateway", "mem_mb", "VmRSS"), g("tcp500_gateway", "mem_mb", "VmHWM")
    if rss is not None:
        brss = g("tcp500_bare", "mem_mb", "VmRSS")
        out.append(("RSS at 500 devices (peak in brackets)", f"{rss:.1f} MB ({hwm:.1f} MB)",
                    _f(brss, "{:.1f}", " MB"), _ratio(rss, brss), "<= 40 MB", _verdict(hwm <= 40)))
    for baud, target in ((9600, 1.0005), (19200, 1.0005), (115200, 1.01)):
        gw, bare = g(f"rtu{baud}_gateway", "wire_ratio"), g(f"rtu{baud}_bare", "wire_ratio")
        if gw is None and bare is None:
            continue
        n = (R.get(f"rtu{baud}_gateway") or R.get(f"rtu{baud}_bare"))["devices"]
        tt = "1.000" if target < 1.001 else f"<= {target:.2f}"
        out.append((f"Wire: cycle / own-plan wire time, {baud} baud 8E1, {n} devices, saturated",
                    _f(gw, "{:.4f}"), _f(bare, "{:.4f}"), _ratio(gw, bare), tt,
                    _verdict(gw < target if gw is not None else None)))
        gm, bm = g(f"rtu{baud}_gateway", "wire_ratio_master"), g(f"rtu{baud}_bare", "wire_ratio_master")
        if gm is not None or bm is not None:
            out.append((f"Wire, less the simulated meters' own delays, {baud} baud",
                        _f(gm, "{:.4f}"), _f(bm, "{:.4f}"), _ratio(gm, bm), tt,
                        _verdict(gm < target if gm is not None else None)))
    for n in (100, 500, 1000):
        f = g(f"tcp{n}_gateway", "faults")
        if not f:
            continue
        interval = R[f"tcp{n}_gateway"]["interval_s"]
        p99 = f.get("p99_s")
        miss = f" ({f['missing']} of {f['edges']} edges never arrived)" if f.get("missing") else ""
        out.append((f"Fault change to event at a subscriber, p50 / p99 / max, {n} devices ({f['edges']} edges){miss}",
                    " / ".join(_f(f.get(k), "{:.3f}") for k in ("p50_s", "p99_s", "max_s")) + " s", "n/a", "n/a",
                    f"p99 <= {interval + 0.1:.1f} s",
                    _verdict(p99 <= interval + 0.1 and not f.get("missing") if p99 is not None else None)))
    for n in (100, 500):
        u = g(f"tcp{n}_gateway", "uplink")
        if not u:
            continue
        out.append((f"Uplink bytes per telemetry value, {n} devices (topic + payload; as MQTT packets)",
                    f"{_f(u['bytes_per_value'], '{:.1f}')} B; {_f(u['mqtt_bytes_per_value'], '{:.1f}')} B",
                    "n/a", "n/a", "(info)", "n/a"))
    return out


def markdown(R: dict) -> str:
    meta = R["meta"]
    lines = [f"# edgegw benchmark, {meta['date']}", "",
             f"`{meta['command']}` on {meta['machine']}; {meta['duration_s']:.0f} s. "
             f"Model `turbine-evc` (one register entry per value; the gateway plans "
             f"{meta['reads']}). Outbox `synchronous = full` (the default). Serial: 8E1 timing "
             f"(11-bit characters) on the wire emulator, slave turnaround {meta['turnaround_ms']} ms."
             + (f" Every device also had `{meta['device_extra']}`." if meta.get("device_extra") else "")
             + (f" Config extra: `{meta['config_extra']}`." if meta.get("config_extra") else ""), "",
             *(["**Quick run: short windows, verdicts are indicative only** (see the notes).", ""]
               if "--quick" in meta.get("command", "") else []),
             "| figure | edgegw | bare pymodbus loop | edgegw / bare | target | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows(R):
        lines.append("| " + " | ".join(r) + " |")
    acc = R.get("wire_accuracy") or []
    if acc:
        lines += ["", "## Wire emulator accuracy", "",
                  "| baud | exchanges (28-register reads) | scheduling (emulator, probe) | elapsed / theoretical | error per exchange | frame end late p50 / p99 / max |",
                  "|---|---|---|---|---|---|"]
        for a in acc:
            lines.append(f"| {a['baud']} | {a['exchanges']} | {a.get('emulator_sched', '?')}, {a.get('probe_sched', '?')} | "
                         f"{a['ratio']:.5f} | {a['error_per_exchange_us']:.0f} us | "
                         f"{a['frame_end_late_p50_us']:.0f} / {a['frame_end_late_p99_us']:.0f} / "
                         f"{a['frame_end_late_max_us']:.0f} us |")
    shim = R.get("slowfsync")
    if shim:
        s = shim["shim"]
        lines += ["", f"Slow-disk shim check ({meta['slow_ms']} ms): fsync {s['fsync_s'] * 1000:.1f} ms, "
                  f"fdatasync {s['fdatasync_s'] * 1000:.1f} ms, SQLite commit {s['sqlite_commit_s'] * 1000:.1f} ms "
                  f"({'works' if shim['works'] else 'NOT WORKING'}; without it: fsync "
                  f"{shim['plain']['fsync_s'] * 1000:.2f} ms)."]
    wire = [R[k] for k in sorted(R) if k.startswith("rtu") and isinstance(R[k], dict)]
    if wire:
        lines += ["", "## Serial runs in detail", "",
                  "| run | polls | cycle | own-plan wire time | wire busy | busy + required silences | master idle on a free line | slave idle | overlaps | frame end late max | request vs line's earliest p50 / p90 / p99 (share late) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for w in wire:
            rl = w.get("request_late_ms")
            late = (" / ".join(f"{rl[k]:+.2f}" for k in ("p50", "p90", "p99")) +
                    f" ms ({(w.get('request_late_share') or 0) * 100:.1f} %)") if rl else "n/a"
            lines.append(f"| {w['label']} | {w['polls']:.0f} | {_f(w['cycle_s'], '{:.4f}', ' s')} | {w['own_plan_s']:.4f} s | "
                         f"{w['utilisation'] * 100:.1f} % | {w['wire_limited_share'] * 100:.1f} % | "
                         f"{w['master_wait_share'] * 100:.2f} % | {w['slave_wait_share'] * 100:.2f} % | "
                         f"{w['overlaps']} | {w['frame_end_late_max_ms']:.1f} ms | {late} |")
    runs = [(k, v) for k, v in R.items() if isinstance(v, dict) and "machine_busy_cores" in v]
    if runs:
        lines += ["", "## How busy the machine was", "",
                  "The machine is shared: each window's CPU use by every process on it, beside the measured process's own.", "",
                  "| phase | window | measured process | whole machine (of %d cores) |" % (meta.get("cores") or 2),
                  "|---|---|---|---|"]
        for k, v in runs:
            own = v["cpu_s"] / v["wall_s"] if v.get("wall_s") else None
            lines.append(f"| {k} | {v['wall_s']:.0f} s | {_f(own, '{:.2f}', ' cores')} | {v['machine_busy_cores']:.2f} cores |")
    lines += ["", "Plots: `cpu_per_poll.png`, `loop_lag.png`, `cycle_vs_baud.png` (when matplotlib is installed).",
              "Raw figures: `results.json`. Method: docs/performance.md.", ""]
    if meta.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(lines)


def plots(R: dict, out: Path) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    # CPU per poll against device count
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for who, style in (("gateway", "o-"), ("bare", "s--")):
        pts = [(n, R[f"tcp{n}_{who}"]["cpu_per_poll_ms"]) for n in (100, 500, 1000)
               if R.get(f"tcp{n}_{who}") and R[f"tcp{n}_{who}"].get("cpu_per_poll_ms")]
        if pts:
            ax.plot(*zip(*pts), style, label="edgegw" if who == "gateway" else "bare pymodbus loop")
    if R.get("tcp500_slow_gateway"):
        ax.plot([500], [R["tcp500_slow_gateway"]["cpu_per_poll_ms"]], "v", label="edgegw, slow disk")
    bare = {n: R[f"tcp{n}_bare"]["cpu_per_poll_ms"] for n in (100, 500, 1000) if R.get(f"tcp{n}_bare")}
    if bare:
        ax.plot(list(bare), [3 * v for v in bare.values()], ":", color="grey", label="target: 3x bare")
    ax.set_xlabel("devices, Modbus TCP, polled every 1 s")
    ax.set_ylabel("CPU per device poll, ms")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title("CPU per device poll")
    fig.tight_layout()
    fig.savefig(out / "cpu_per_poll.png", dpi=100)
    plt.close(fig)
    made.append("cpu_per_poll.png")
    # Loop lag over time
    runs = [k for k in ("tcp500_gateway", "tcp1000_gateway", "tcp500_slow_gateway") if R.get(k)]
    if runs:
        fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        for k in runs:
            s = R[k].get("ping_series") or []
            if s:
                axes[0].plot([t for t, _ in s], [v for _, v in s], ".", ms=2.5, label=k.replace("_gateway", ""))
            lag = R[k].get("loop_lag_series") or []
            if lag:
                axes[0].plot([t for t, _ in lag], [v.get("p999") for _, v in lag], "x", label=f"{k}: status p99.9")
            sil = R[k]["polls"].get("silence_series") or []
            if sil:
                axes[1].plot([t for t, _ in sil], [v * 1000 for _, v in sil], ".-", lw=0.6, ms=3,
                             label=k.replace("_gateway", ""))
        for ax in axes:
            ax.set_yscale("log")
            ax.legend(fontsize=8)
        axes[0].axhline(10, color="grey", ls=":", lw=0.8)
        axes[0].set_ylabel("control ping round trip, ms")
        axes[1].set_ylabel("longest silence on all\nendpoints in each s, ms")
        axes[1].set_xlabel("seconds into the measured window")
        axes[0].set_title("Event-loop lag over time (10 ms line: the p99.9 target)")
        fig.tight_layout()
        fig.savefig(out / "loop_lag.png", dpi=100)
        plt.close(fig)
        made.append("loop_lag.png")
    # Cycle time against baud rate, and its ratio to the wire-time limit
    bauds = [b for b in (9600, 19200, 115200) if R.get(f"rtu{b}_gateway") or R.get(f"rtu{b}_bare")]
    if bauds:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
        for who, style, label in (("gateway", "o-", "edgegw"), ("bare", "s--", "bare pymodbus loop")):
            runs = [(b, R[f"rtu{b}_{who}"]) for b in bauds if R.get(f"rtu{b}_{who}") and R[f"rtu{b}_{who}"].get("cycle_s")]
            if runs:
                ax.plot([b for b, _ in runs], [r["cycle_s"] / r["devices"] * 1000 for _, r in runs], style, label=label)
                ax2.plot([b for b, _ in runs], [r["wire_ratio"] for _, r in runs], style, label=label)
        lim = []
        for b in bauds:
            r = R.get(f"rtu{b}_gateway") or R.get(f"rtu{b}_bare")
            lim.append((b, r["own_plan_s"] / r["devices"] * 1000))
        ax.plot(*zip(*lim), "k:", label="wire-time limit (own plan)")
        ax2.axhline(1.0, color="k", ls=":", lw=1, label="wire-time limit")
        ax2.axhline(1.01, color="grey", ls="--", lw=0.8, label="1.01 (target at 115200)")
        for a_ in (ax, ax2):
            a_.set_xscale("log")
            a_.set_xlabel("baud (8E1, 11-bit characters)")
            a_.legend(fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("cycle time per device poll, ms")
        ax.set_title("Cycle time against baud rate")
        ax2.set_ylabel("cycle / own-plan wire time")
        ax2.set_title("Wire efficiency")
        fig.tight_layout()
        fig.savefig(out / "cycle_vs_baud.png", dpi=100)
        plt.close(fig)
        made.append("cycle_vs_baud.png")
    return made
