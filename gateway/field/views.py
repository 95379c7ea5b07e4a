"""Screens of the field engineer's commands: tables, colour, both languages.

Every renderer is a pure function of a result dict (what the daemon answered
or what the command found itself) and returns text, so a screen can be tested
against a file and the --json output is the same dict. Colour is only used
when the output is a terminal: an engineer pipes `edgegw status` into a
ticket or a log, and escape codes would be noise there.

Chinese characters take two columns in a terminal, so column widths are
counted in display cells, not in characters.
"""
from __future__ import annotations

from protocols.models import trigger_text

from .i18n import age, size, t
from .problems import device_rank, problem_subject, problem_text, problems
from .screen import (
    due_value,
    fault_block,
    fault_sort_key,
    render_device,
    render_status,
    state_line,
    title_lines,
)
from .text import (
    Style,
    _sev,
    _text,
    after_code,
    fmt_ts,
    headline,
    overdue_s,
    seconds_between,
    table,
    without_code,
)

__all__ = [
    "device_rank",
    "explain_dict",
    "headline",
    "problem_subject",
    "problem_text",
    "problems",
    "render_device",
    "render_explain",
    "render_faults",
    "render_status",
    "render_status_all",
]

# The one-screen status and the device view are in screen.py, the problem
# list in problems.py; both are re-exported here for the commands and tests.

def _counters(c: dict | None) -> list[str]:
    if not c:
        return ["-"] * 6
    exc = sum(v for k, v in c.items() if k.startswith("exception"))
    bad = c.get("decode_error", 0) + c.get("out_of_range", 0)
    return [str(c.get("polls", 0)), str(c.get("ok", 0)), str(c.get("timeout", 0)),
            str(c.get("crc", 0) + c.get("short_response", 0)), str(exc), str(bad)]


def render_status_all(st: dict, lang: str, color: bool = False) -> str:
    """`edgegw status --all`: the gateway, every device with its counters,
    every problem and every active fault in full."""
    s = Style(color)
    d = st.get("daemon") or {}
    now = st.get("ts")
    lines = title_lines(st, lang, s)
    lines.append("")

    pbs = problems(st)
    if pbs:
        lines.append(s.bold(t(lang, "st.problems", n=len(pbs))))
        prows: list[list] = [[(t(lang, p["level"]), lambda x, lv=p["level"]: s.level(lv, x)),
                              problem_subject(p, lang), problem_text(p, lang)] for p in pbs]
        lines += table(None, prows, style=s)
    else:
        lines.append(s.green(t(lang, "st.no_problems")))
    lines.append("")

    lines.append(s.bold(t(lang, "st.gateway")))
    rows: list[list] = []
    if d.get("running"):
        rows.append([t(lang, "st.daemon"), t(lang, "st.daemon_up", pid=d.get("pid"),
                                             up=age(d.get("uptime_s"), lang), version=d.get("version"))])
        br = st.get("broker") or {}
        where = f"{br.get('host')}:{br.get('port')}" + (" TLS" if br.get("tls") else "")
        if br.get("connected"):
            rows.append([t(lang, "st.broker"), (t(lang, "st.broker_up", where=where, n=br.get("connects", 0)), s.green)])
        else:
            err = br.get("last_error")
            rows.append([t(lang, "st.broker"), (t(lang, "st.broker_down", where=where,
                                                  err=f" ({err})" if err else ""), s.red)])
        synced = (st.get("clock") or {}).get("synced")
        rows.append([t(lang, "st.clock"), (t(lang, "synced"), s.green) if synced else (t(lang, "not_synced"), s.yellow)])
        ob = st.get("outbox") or {}
        rows.append([t(lang, "st.backlog"), t(lang, "st.backlog_v", n=ob.get("backlog_msgs", 0),
                                              size=size(ob.get("backlog_bytes")),
                                              age=age(ob.get("oldest_age_s"), lang),
                                              inflight=ob.get("inflight", 0))])
        dropped = ob.get("dropped") or {}
        rows.append([t(lang, "st.dropped"), t(lang, "st.dropped_v", **{k: dropped.get(k, 0) for k in
                                                                        ("telemetry", "state", "event")})
                     if any(dropped.values()) else t(lang, "none")])
        health = ob.get("health") or "ok"
        rows.append([t(lang, "st.store"), (t(lang, "ok_word"), s.green) if health == "ok" else
                     (f"{health}: {ob.get('health_detail') or ''}", s.red)])
        for name, b in sorted((st.get("buses") or {}).items()):
            conn = t(lang, "connected") if b.get("connected") else t(lang, "disconnected")
            rows.append([t(lang, "st.bus"), t(lang, "st.bus_v", name=name, conn=conn, requests=b.get("requests", 0),
                                              timeouts=b.get("timeouts", 0), crc=b.get("crc_errors", 0),
                                              exc=b.get("exceptions", 0))])
    else:
        why = t(lang, "st.no_answer", sock=d["socket"]) if d.get("socket") else d.get("why") or "-"
        rows.append([t(lang, "st.daemon"), (t(lang, "st.daemon_down", why=why), s.red)])
    lines += table(None, rows, style=s)
    lines.append("")

    devices = st.get("devices") or []
    rank = device_rank(st)
    devices = sorted(devices, key=lambda x: (rank.get(x["name"], (1, 0)), x["name"]))
    lines.append(s.bold(t(lang, "st.devices")))
    headers = [t(lang, k) for k in ("col.device", "col.model", "col.busunit", "col.avail", "col.last_good",
                                    "col.age", "col.polls", "col.ok", "col.timeout", "col.crc", "col.exc",
                                    "col.bad")]
    rows = []
    for dev in devices:
        av = dev.get("availability") or "unknown"
        av_cell = (t(lang, av), {"online": s.green, "unavailable": s.red}.get(av, s.yellow))
        rows.append([dev["name"], dev.get("model", "-"), f"{dev.get('bus')}/{dev.get('unit')}", av_cell,
                     fmt_ts(dev.get("last_good_ts")) if dev.get("last_good_ts") else t(lang, "never"),
                     age(seconds_between(now, dev.get("last_good_ts")), lang)] + _counters(dev.get("counters")))
    lines += table(headers, rows, right=set(range(6, 12)), style=s)

    for dev in devices:
        faults, states = dev.get("faults") or [], dev.get("states") or []
        if not faults and not states:
            continue
        lines.append("")
        lines.append(s.bold(f"{dev['name']} ({dev.get('model')}, {dev.get('bus')}/{dev.get('unit')})"))
        for f in sorted(faults, key=lambda f: fault_sort_key(f, now)):
            lines += fault_block(f, lang, now, s)
        for f in states:
            lines.append(state_line(f, lang))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- explain

def explain_dict(model, fault) -> dict:
    def text(x):
        return {"meaning": x.meaning, "causes": list(x.causes), "remedy": list(x.remedy),
                "cleared_by": x.cleared_by}
    return {
        "model": model.id, "model_name": {"en": model.name_en, "zh": model.name_zh},
        "code": fault.code, "kind": fault.kind, "severity": fault.severity,
        "valve_closed": fault.valve_closed, "site_visit": fault.site_visit, "debounce": fault.debounce,
        "ref": fault.ref, "trigger": dict(fault.trigger),
        "cleared_by": fault.cleared_by, "en": text(fault.en), "zh": text(fault.zh),
    }


def render_explain(e: dict, lang: str, color: bool = False) -> str:
    s = Style(color)
    x = e[lang]
    level = "fail" if e["severity"] in ("critical", "major") else "warn"
    lines = [s.bold(f"{e['model']}  {e['model_name'][lang]}"),
             s.level(level, e["code"]) + "  " + t(
                 lang, "ex.flags", sev=_sev(lang, e["severity"]), kind=t(lang, f"ex.kind.{e['kind']}"),
                 valve=t(lang, "ex.valve_closed" if e["valve_closed"] else "ex.valve_open"),
                 visit=t(lang, "yes" if e["site_visit"] else "no"), ref=e["ref"], debounce=e["debounce"]),
             "", s.bold(t(lang, "ex.meaning")), "  " + without_code(e["code"], x["meaning"]), "",
             s.bold(t(lang, "ex.causes"))]
    lines += [f"  {i}. {c}" for i, c in enumerate(x["causes"], 1)]
    lines += ["", s.bold(t(lang, "ex.remedy"))]
    lines += [f"  {i}. {r}" for i, r in enumerate(x["remedy"], 1)]
    lines += ["", s.bold(t(lang, "ex.cleared_by")), f"  {x['cleared_by']} [{e['cleared_by']}]",
              "", s.bold(t(lang, "ex.trigger")),
              "  " + trigger_text(e["trigger"])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- faults

def render_faults(data: dict, lang: str, color: bool = False) -> str:
    s = Style(color)
    lines = []
    if data.get("note"):
        lines += [s.yellow(data["note"]), ""]
    now = data.get("ts")
    active = [dv for dv in data.get("active") or [] if dv.get("faults") or dv.get("states")]
    # the device with the most urgent fault first: past its deadline, then by severity
    active.sort(key=lambda dv: (min((fault_sort_key(f, now) for f in dv.get("faults") or []),
                                    default=(9,)), dv["name"]))
    n = sum(len(dv.get("faults") or []) for dv in active)
    lines.append(s.bold(t(lang, "fl.active", n=n) if n else t(lang, "fl.no_active")))
    colon = "：" if lang == "zh" else ": "
    for dv in active:
        lines.append(s.bold(f"{dv['name']} ({dv.get('model')}, {dv.get('bus')}/{dv.get('unit')})"))
        for f in sorted(dv.get("faults") or [], key=lambda f: fault_sort_key(f, now)):
            level = "fail" if f.get("severity") in ("critical", "major") else "warn"
            due = due_value(f, now, lang)
            late = overdue_s(f, now)
            if late is not None and late > 0:
                level = "fail"
            lines.append("  " + s.level(level, t(
                lang, "st.fault_head", code=f["code"], sev=_sev(lang, f.get("severity")),
                since=fmt_ts(f.get("since")), age=age(seconds_between(now, f.get("since")), lang),
                ref=f.get("ref") or "-")))
            if due:
                lines.append(f"    {t(lang, 'st.respond_by')}{colon}" + (s.red(due) if level == "fail" and late
                                                                          and late > 0 else due))
            lines.append(f"    {t(lang, 'st.meaning')}{colon}{without_code(f['code'], _text(f, 'meaning', lang))}")
            steps = (f.get("remedy_steps") or {}).get(lang) or [_text(f, "remedy", lang)]
            lines.append(f"    {t(lang, 'fl.remedy')}{colon.rstrip()}")
            lines += [f"      {i}. {r}" for i, r in enumerate(steps, 1)]
            cleared = f.get("cleared_by") or {}
            lines.append(f"    {t(lang, 'st.cleared_by')}{colon}{cleared.get(lang) or ''}"
                         + (f" [{cleared['code']}]" if cleared.get("code") else ""))
        for f in dv.get("states") or []:
            lines.append(state_line(f, lang))
    lines.append("")
    hist = data.get("history") or []
    if not hist:
        lines.append(s.bold(t(lang, "fl.no_history")))
    else:
        lines.append(s.bold(t(lang, "fl.history", n=len(hist))))
        rows = []
        for h in reversed(hist):
            state = h.get("state")
            rows.append([fmt_ts(h.get("ts")), h.get("device", "-"), h.get("code", "-"),
                         (t(lang, state) if state in ("raised", "cleared") else str(state),
                          s.red if state == "raised" else s.green),
                         _sev(lang, h.get("severity")), after_code(h.get("code", ""), _text(h, "meaning", lang))])
        lines += table([t(lang, k) for k in ("col.time", "col.device", "col.code", "col.event",
                                             "col.severity", "col.meaning")], rows, style=s)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- scan / read


# --------------------------------------------------------------------------- watch


# --------------------------------------------------------------------------- diag


# --------------------------------------------------------------------------- config check

