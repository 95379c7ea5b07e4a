"""`edgegw status` on one screen, and `edgegw status DEVICE`.

The question at a site is "what is wrong and what do I do first", so the
answer must fit a terminal (100x30 on the engineer's laptop) without
scrolling: the problems come first, one line each with the first step,
then a few lines on the gateway and one row per device. Lines are clipped
to the terminal, never wrapped (a wrapped line pushes the problems off the
top), and the cut is marked. What does not fit says where it is:
`status DEVICE` has everything about one device, `status --all` the full
listing, `--json` all the data.
"""
from __future__ import annotations

from .i18n import age, size, t
from .problems import device_rank, problem_cells, problem_subject, problems
from .text import (
    MARK,
    SEV_ORDER,
    Style,
    _sev,
    _text,
    after_code,
    fit,
    fmt_num,
    fmt_ts,
    hours,
    overdue_s,
    seconds_between,
    table,
    without_code,
)
from .text import width as cells


def title_lines(st: dict, lang: str, s: Style, key: str = "st.title", cols: int | None = None, **kw) -> list[str]:
    """The title, and with the daemon stopped, where the shown state comes
    from; in `cols` cells the path loses its start, never its file name."""
    gw = st.get("gateway") or {}
    site = f" ({gw['site']})" if gw.get("site") else ""
    lines = [s.bold(t(lang, key, gw=gw.get("id", "?"), site=site, ts=fmt_ts(st.get("ts")), **kw))]
    if not (st.get("daemon") or {}).get("running"):
        lines.append(s.red(t(lang, "st.down_title")))
        rec = st.get("recorded") or {}
        if rec.get("error"):
            # typically a group member: state.json is the service user's alone
            lines.append(s.yellow(t(lang, "er.state_unreadable", path=rec.get("path"), why=rec["error"])))
        elif rec.get("when"):
            path = str(rec.get("path"))
            line = t(lang, "st.recorded", path=path, when=fmt_ts(rec.get("when")))
            if cols is not None and cells(line) > cols:
                keep = max(len(path) - (cells(line) - cols) - len(MARK), len(path.rsplit("/", 1)[-1]))
                line = t(lang, "st.recorded", path=MARK + path[len(path) - keep:], when=fmt_ts(rec.get("when")))
            lines.append(line)
        else:
            lines.append(t(lang, "st.no_record", path=rec.get("path")))
    return lines


def fault_sort_key(f: dict, now: str | None) -> tuple:
    """Past its response deadline first, then by severity (the most overdue
    first within a severity), as problems() orders them."""
    late = overdue_s(f, now)
    late = late if late is not None and late > 0 else None
    return (0 if late else 1, SEV_ORDER.get(f.get("severity"), 9), -(late or 0), f.get("code", ""))


def due_value(f: dict, now: str | None, lang: str) -> str | None:
    """"2026-11-23 07:20:00 UTC (within 1 h), overdue 1 h 10 min", or None without a promise."""
    late = overdue_s(f, now)
    if late is None:
        return None
    state = t(lang, "due.overdue", age=age(late, lang)) if late > 0 else t(lang, "due.left", age=age(-late, lang))
    return t(lang, "due.value", by=fmt_ts(f.get("respond_by")), h=hours(f.get("respond_within_h")), state=state)


def fault_block(f: dict, lang: str, now: str | None, s: Style, all_steps: bool = False) -> list[str]:
    """One active fault under its code: severity and age, the response
    deadline, meaning, the first (or every) remedy step, how it is cleared."""
    level = "fail" if f.get("severity") in ("critical", "major") else "warn"
    late = overdue_s(f, now)
    if late is not None and late > 0:
        level = "fail"
    head = t(lang, "st.fault_head", code=f["code"], sev=_sev(lang, f.get("severity")),
             since=fmt_ts(f.get("since")), age=age(seconds_between(now, f.get("since")), lang),
             ref=f.get("ref") or "-")
    lines = ["  " + s.level(level, head)]
    if f.get("flapping"):
        lines.append("    " + s.yellow(t(lang, "st.flapping")))
    cleared = f.get("cleared_by") or {}
    card = cleared.get("code")
    rows: list[list] = []
    due = due_value(f, now, lang)
    if due:
        rows.append([t(lang, "st.respond_by"), (due, s.red) if late and late > 0 else due])
    rows.append([t(lang, "st.meaning"), without_code(f["code"], _text(f, "meaning", lang))])
    steps = (f.get("remedy_steps") or {}).get(lang) if all_steps else None
    if steps:
        rows += [[t(lang, "fl.remedy") if i == 1 else "", f"{i}. {r}"] for i, r in enumerate(steps, 1)]
    else:
        rows.append([t(lang, "st.do_first"), _text(f, "remedy", lang)])
    rows.append([t(lang, "st.cleared_by"), (cleared.get(lang) or cleared.get("en") or "")
                 + (f" [{card}]" if card else "")])
    return lines + table(None, rows, indent=4, style=s)


def state_line(f: dict, lang: str) -> str:
    return "  " + t(lang, "st.state", code=f["code"], meaning=after_code(f["code"], _text(f, "meaning", lang)))


# --------------------------------------------------------------------------- one screen

def _gateway_parts(st: dict, lang: str) -> list[str]:
    d = st.get("daemon") or {}
    if not d.get("running"):
        why = t(lang, "st.no_answer", sock=d["socket"]) if d.get("socket") else d.get("why") or "-"
        return [t(lang, "ss.daemon_down", why=why)]
    br = st.get("broker") or {}
    where = f"{br.get('host')}:{br.get('port')}" + (" TLS" if br.get("tls") else "")
    err = br.get("last_error")
    ob = st.get("outbox") or {}
    parts = [t(lang, "ss.daemon", pid=d.get("pid"), up=age(d.get("uptime_s"), lang)),
             t(lang, "ss.broker", where=where) if br.get("connected")
             else t(lang, "ss.broker_down", where=where, err=f" ({err})" if err else ""),
             t(lang, "ss.clock_ok" if (st.get("clock") or {}).get("synced") else "ss.clock_bad"),
             t(lang, "ss.backlog", n=ob.get("backlog_msgs", 0), size=size(ob.get("backlog_bytes")),
               age=age(ob.get("oldest_age_s"), lang))]
    dropped = ob.get("dropped") or {}
    if any(dropped.values()):
        parts.append(t(lang, "ss.dropped", **{k: dropped.get(k, 0) for k in ("telemetry", "state", "event")}))
    health = ob.get("health") or "ok"
    parts.append(t(lang, "ss.store", health=t(lang, "ok_word") if health == "ok" else health))
    for name, b in sorted((st.get("buses") or {}).items()):
        parts.append(t(lang, "ss.bus", name=name, conn=t(lang, "connected" if b.get("connected") else "disconnected"),
                       timeouts=b.get("timeouts", 0), crc=b.get("crc_errors", 0)))
    return parts


def _pack(parts: list[str], cols: int, sep: str) -> list[str]:
    """Parts joined by `sep` into as few lines of at most `cols` cells as
    they fit in; a part is never split between lines."""
    lines: list[str] = []
    for p in parts:
        if lines and cells(lines[-1] + sep + p) <= cols:
            lines[-1] += sep + p
        else:
            lines.append(p)
    return lines


def _device_row(dev: dict, now, lang: str, s: Style) -> list:
    av = dev.get("availability") or "unknown"
    good = dev.get("last_good_ts")
    flags = [f["code"] for f in sorted(dev.get("faults") or [], key=lambda f: fault_sort_key(f, now))]
    flags += [f"({f['code']})" for f in dev.get("states") or []]
    return [dev["name"], dev.get("model", "-"), f"{dev.get('bus')}/{dev.get('unit')}",
            (t(lang, av), {"online": s.green, "unavailable": s.red}.get(av, s.yellow)),
            t(lang, "ago", age=age(seconds_between(now, good), lang)) if good else t(lang, "never"),
            (", ".join(flags), s.red) if dev.get("faults") else (", ".join(flags) or "-")]


def render_status(st: dict, lang: str, color: bool = False, width: int = 100, height: int = 30) -> str:
    """The one screen: at most `height` - 1 lines (the shell prompt takes
    the last row) of at most `width` display cells."""
    s = Style(color)
    cols = max(40, width)
    now = st.get("ts")
    head = title_lines(st, lang, s, cols=cols)
    pbs = problems(st)
    sep = "；" if lang == "zh" else "; "
    gw = _pack(_gateway_parts(st, lang), cols - 2, sep)
    devices = st.get("devices") or []
    rank = device_rank(st)
    devices = sorted(devices, key=lambda x: (rank.get(x["name"], (1, 0)), x["name"]))

    # Rows left for problems and devices once the fixed lines are counted:
    # the blank lines and headers, the gateway lines and the closing hint.
    room = max(4, height - 1) - (len(head) + 9 + len(gw))
    n_pb, n_dev = len(pbs), len(devices)
    show_pb, show_dev, dev_table = n_pb, n_dev, True
    if n_pb + n_dev > room:
        show_dev = room - n_pb - 1                # one line says how many devices are left out
        if show_dev < 1:
            # Problems first: the device table gives way (its column header
            # too), then the problems beyond the screen are counted.
            show_dev, dev_table = 0, False
            show_pb = n_pb if n_pb <= room else max(1, room - 1)
    lines = head + [""]
    if pbs:
        lines.append(s.bold(t(lang, "ss.problems", n=n_pb)))
        rows = []
        shown = pbs[:show_pb]
        used = 2 + 4 + 2 + max(cells(problem_subject(p, lang)) for p in shown) + 2 \
            + max(cells(p["args"].get("code") or "") for p in shown) + 2
        for p in shown:
            code, text = problem_cells(p, lang, now, cols - used)
            rows.append([(t(lang, p["level"]), lambda x, lv=p["level"]: s.level(lv, x)),
                         problem_subject(p, lang), code, text])
        lines += table(None, rows, style=s)
        if show_pb < n_pb:
            lines.append("  " + t(lang, "ss.more_problems", n=n_pb - show_pb))
    else:
        lines.append(s.green(t(lang, "st.no_problems")))
    lines += ["", s.bold(t(lang, "st.gateway"))] + ["  " + x for x in gw]
    lines += ["", s.bold(t(lang, "st.devices"))]
    if dev_table:
        headers = [t(lang, k) for k in ("col.device", "col.model", "col.busunit", "col.avail", "col.last_good",
                                        "col.faults")]
        rows = [_device_row(dev, now, lang, s) for dev in devices[:show_dev]]
        lines += table(headers, rows, style=s)
    if show_dev < n_dev:
        lines.append("  " + t(lang, "ss.more_devices", n=n_dev - show_dev))
    lines += ["", t(lang, "ss.hint")]
    return "\n".join(fit(x, cols) for x in lines) + "\n"


# --------------------------------------------------------------------------- one device

def render_device(st: dict, name: str, lang: str, color: bool = False) -> str:
    """Everything about one device: where and how it is read, its counters,
    its problems, every active fault with every remedy step, its values."""
    s = Style(color)
    now = st.get("ts")
    dev = next(d for d in st.get("devices") or [] if d["name"] == name)
    lines = title_lines(st, lang, s, "ss.device_title", name=name) + [""]
    model_name = (dev.get("model_name") or {}).get(lang) or ""
    lines.append(s.bold(f"{name}  {dev.get('model')}" + (f"  {model_name}" if model_name else "")))
    av = dev.get("availability") or "unknown"
    good = dev.get("last_good_ts")
    ago = t(lang, "ago", age=age(seconds_between(now, good), lang))
    rows: list[list] = [
        [t(lang, "ss.busunit"), f"{dev.get('bus')}/{dev.get('unit')}"],
        [t(lang, "ss.avail"), (t(lang, av), {"online": s.green, "unavailable": s.red}.get(av, s.yellow))],
        [t(lang, "ss.last_good"), t(lang, "ss.when_ago", ts=fmt_ts(good), ago=ago) if good else t(lang, "never")],
        [t(lang, "ss.last_error"), (t(lang, "ss.when_ago", ts=dev["last_error"], ago=fmt_ts(dev["last_error_ts"]))
                                    if dev.get("last_error_ts") else dev["last_error"])
         if dev.get("last_error") else "-"],
    ]
    c = dev.get("counters")
    if c:
        exc = sum(v for k, v in c.items() if k.startswith("exception"))
        rows.append([t(lang, "ss.counters"), t(lang, "ss.counters_v", polls=c.get("polls", 0), ok=c.get("ok", 0),
                                              timeouts=c.get("timeout", 0),
                                              crc=c.get("crc", 0) + c.get("short_response", 0), exc=exc,
                                              bad=c.get("decode_error", 0) + c.get("out_of_range", 0))])
    lines += table(None, rows, style=s)
    faults = sorted(dev.get("faults") or [], key=lambda f: fault_sort_key(f, now))
    if faults:
        lines += ["", s.bold(t(lang, "fl.active", n=len(faults)))]
        for f in faults:
            lines += fault_block(f, lang, now, s, all_steps=True)
    for f in dev.get("states") or []:
        lines.append(state_line(f, lang))
    values = dev.get("values") or {}
    if values:
        lines += ["", s.bold(t(lang, "ss.values"))]
        lines += table(None, [[k, fmt_num(v)] for k, v in values.items()], style=s)
    return "\n".join(lines) + "\n"
