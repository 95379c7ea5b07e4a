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
from .text import SEV_ORDER, Style, _sev, _text, fmt_ts, seconds_between, table

# --------------------------------------------------------------------------- terminal


# --------------------------------------------------------------------------- time


# --------------------------------------------------------------------------- status


def problems(st: dict) -> list[dict]:
    """What is wrong on this site, worst first: {level, subject, key, args, device}.

    The exit code of `edgegw status` follows from this list (any "fail": 1),
    so the screen and the exit code can never disagree."""
    out: list[dict] = []
    d = st.get("daemon") or {}
    gw = st.get("gateway") or {}
    if not d.get("running"):
        out.append({"level": "fail", "subject": gw.get("id") or "gateway", "key": "pb.daemon_down",
                    "args": {}, "rank": (0, 0)})
    else:
        br = st.get("broker") or {}
        if not br.get("connected"):
            err = br.get("last_error")
            out.append({"level": "fail", "subject": "mqtt", "key": "pb.broker_down", "rank": (0, 1),
                        "args": {"where": f"{br.get('host')}:{br.get('port')}", "err": f" ({err})" if err else ""}})
        ob = st.get("outbox") or {}
        if ob.get("health") not in (None, "ok"):
            out.append({"level": "fail", "subject": "outbox", "key": "pb.store", "rank": (0, 2),
                        "args": {"health": ob.get("health"), "detail": ob.get("health_detail") or ""}})
        for name, b in sorted((st.get("buses") or {}).items()):
            if not b.get("connected"):
                out.append({"level": "fail", "subject": name, "key": "pb.bus_down", "rank": (0, 3),
                            "args": {"bus": name, "err": b.get("last_connect_error") or "-"}})
        if (ob.get("dropped") or {}).get("event"):
            out.append({"level": "warn", "subject": "outbox", "key": "pb.event_drops", "rank": (1, 2),
                        "args": {"n": ob["dropped"]["event"]}})
        if (ob.get("oldest_age_s") or 0) > 600:
            out.append({"level": "warn", "subject": "outbox", "key": "pb.backlog_old", "rank": (1, 3),
                        "args": {"age_s": ob["oldest_age_s"]}})
        if (st.get("clock") or {}).get("synced") is False:
            out.append({"level": "warn", "subject": "clock", "key": "pb.clock", "args": {}, "rank": (1, 4)})
    for dev in st.get("devices") or []:
        name = dev["name"]
        if dev.get("availability") == "unavailable":
            key = "pb.unavailable" if dev.get("last_good_ts") else "pb.never"
            # after a critical fault (gas), before the rest: a silent device tells us nothing
            out.append({"level": "fail", "subject": name, "device": name, "key": key, "rank": (0, 4.05),
                        "args": {"since": dev.get("last_good_ts"), "err": dev.get("last_error") or "-"}})
        for f in dev.get("faults") or []:
            sev = f.get("severity")
            level = "fail" if sev in ("critical", "major") else "warn"
            out.append({"level": level, "subject": name, "device": name, "key": "pb.fault",
                        "rank": (0 if level == "fail" else 1, 4 + SEV_ORDER.get(sev, 3) / 10),
                        "args": {"code": f["code"], "meaning": f.get("meaning"), "sev": sev,
                                 "since": f.get("since")}})
    out.sort(key=lambda p: (p["rank"], p["subject"]))
    for p in out:
        del p["rank"]
    return out


_SUBJECTS = {"clock": "st.clock", "mqtt": "st.broker", "outbox": "st.backlog"}


def problem_subject(p: dict, lang: str) -> str:
    key = None if p.get("device") else _SUBJECTS.get(p["subject"])
    return t(lang, key) if key else p["subject"]


def problem_text(p: dict, lang: str) -> str:
    a = dict(p["args"])
    if p["key"] == "pb.fault":
        a["meaning"] = a["meaning"].get(lang) or a["meaning"].get("en") if isinstance(a["meaning"], dict) \
            else (a["meaning"] or "")
        a["sev"] = _sev(lang, a["sev"])
        a["since"] = fmt_ts(a["since"])
    elif p["key"] in ("pb.unavailable",):
        a["since"] = fmt_ts(a["since"])
    elif p["key"] == "pb.backlog_old":
        a = {"age": age(a["age_s"], lang)}
    return t(lang, p["key"], **a)


def device_rank(st: dict) -> dict[str, tuple]:
    """Devices with problems first (worst first), then the rest by name."""
    worst: dict[str, tuple] = {}
    for i, p in enumerate(problems(st)):
        dev = p.get("device")
        if dev and dev not in worst:
            worst[dev] = (0, i)
    return {d["name"]: worst.get(d["name"], (1, 0)) for d in st.get("devices") or []}


def _counters(c: dict | None) -> list[str]:
    if not c:
        return ["-"] * 6
    exc = sum(v for k, v in c.items() if k.startswith("exception"))
    bad = c.get("decode_error", 0) + c.get("out_of_range", 0)
    return [str(c.get("polls", 0)), str(c.get("ok", 0)), str(c.get("timeout", 0)),
            str(c.get("crc", 0) + c.get("short_response", 0)), str(exc), str(bad)]


def render_status(st: dict, lang: str, color: bool = False) -> str:
    s = Style(color)
    gw = st.get("gateway") or {}
    d = st.get("daemon") or {}
    now = st.get("ts")
    site = f" ({gw['site']})" if gw.get("site") else ""
    lines = [s.bold(t(lang, "st.title", gw=gw.get("id", "?"), site=site, ts=fmt_ts(now)))]
    if not d.get("running"):
        lines.append(s.red(t(lang, "st.down_title")))
        rec = st.get("recorded") or {}
        if rec.get("error"):
            # typically a group member: state.json is the service user's alone
            lines.append(s.yellow(t(lang, "er.state_unreadable", path=rec.get("path"), why=rec["error"])))
        elif rec.get("when"):
            lines.append(t(lang, "st.recorded", path=rec.get("path"), when=fmt_ts(rec.get("when"))))
        else:
            lines.append(t(lang, "st.no_record", path=rec.get("path")))
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
        for f in sorted(faults, key=lambda f: (SEV_ORDER.get(f.get("severity"), 9), f["code"])):
            level = "fail" if f.get("severity") in ("critical", "major") else "warn"
            head = t(lang, "st.fault_head", code=f["code"], sev=_sev(lang, f.get("severity")),
                     since=fmt_ts(f.get("since")), age=age(seconds_between(now, f.get("since")), lang),
                     ref=f.get("ref") or "-")
            lines.append("  " + s.level(level, head))
            if f.get("flapping"):
                lines.append("    " + s.yellow(t(lang, "st.flapping")))
            cleared = f.get("cleared_by") or {}
            card = cleared.get("code")
            rows = [[t(lang, "st.meaning"), _text(f, "meaning", lang)],
                    [t(lang, "st.do_first"), _text(f, "remedy", lang)],
                    [t(lang, "st.cleared_by"), (cleared.get(lang) or cleared.get("en") or "")
                     + (f" [{card}]" if card else "")]]
            lines += table(None, rows, indent=4, style=s)
        for f in states:
            lines.append("  " + t(lang, "st.state", code=f["code"], meaning=_text(f, "meaning", lang)))
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
             "", s.bold(t(lang, "ex.meaning")), "  " + x["meaning"], "", s.bold(t(lang, "ex.causes"))]
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
    active = [dv for dv in data.get("active") or [] if dv.get("faults") or dv.get("states")]
    n = sum(len(dv.get("faults") or []) for dv in active)
    lines.append(s.bold(t(lang, "fl.active", n=n) if n else t(lang, "fl.no_active")))
    now = data.get("ts")
    for dv in active:
        lines.append(s.bold(f"{dv['name']} ({dv.get('model')}, {dv.get('bus')}/{dv.get('unit')})"))
        for f in dv.get("faults") or []:
            level = "fail" if f.get("severity") in ("critical", "major") else "warn"
            lines.append("  " + s.level(level, t(
                lang, "st.fault_head", code=f["code"], sev=_sev(lang, f.get("severity")),
                since=fmt_ts(f.get("since")), age=age(seconds_between(now, f.get("since")), lang),
                ref=f.get("ref") or "-")))
            colon = "：" if lang == "zh" else ": "
            lines.append(f"    {t(lang, 'st.meaning')}{colon}{_text(f, 'meaning', lang)}")
            steps = (f.get("remedy_steps") or {}).get(lang) or [_text(f, "remedy", lang)]
            lines.append(f"    {t(lang, 'fl.remedy')}{colon.rstrip()}")
            lines += [f"      {i}. {r}" for i, r in enumerate(steps, 1)]
            cleared = f.get("cleared_by") or {}
            lines.append(f"    {t(lang, 'st.cleared_by')}{colon}{cleared.get(lang) or ''}"
                         + (f" [{cleared['code']}]" if cleared.get("code") else ""))
        for f in dv.get("states") or []:
            lines.append("  " + t(lang, "st.state", code=f["code"], meaning=_text(f, "meaning", lang)))
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
                         _sev(lang, h.get("severity")), _text(h, "meaning", lang)])
        lines += table([t(lang, k) for k in ("col.time", "col.device", "col.code", "col.event",
                                             "col.severity", "col.meaning")], rows, style=s)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- scan / read


# --------------------------------------------------------------------------- watch


# --------------------------------------------------------------------------- diag


# --------------------------------------------------------------------------- config check

